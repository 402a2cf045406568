"""Small pieces every benchmark shares: the machine it ran on, test images, console, JSON, formatting."""

from __future__ import annotations

import io
import json
import os
import platform
from pathlib import Path
from typing import Any

from rich.console import Console

BUSY_WARNING = 0.3  # cores busy with other work above which a report warns that its numbers are noisy


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (None off Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return None


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def digit_pngs() -> list[bytes]:
    """The 497 held-out digits (uint8 56x56x3) as PNG files, the images every serving benchmark sends."""
    from PIL import Image

    from adapter.digits.dataset import load_split

    out = []
    for image in load_split("eval").images:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def make_console(width: int = 120) -> Console:
    """A console; piped or logged output gets a fixed width so tables keep one line per row."""
    console = Console()
    return console if console.is_terminal else Console(width=width)


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")


def metric_value(text: str, name: str) -> float | None:
    """One unlabelled sample's value from a Prometheus text exposition, None when absent.

    >>> metric_value("# HELP x y\\nttrv_adapter_misses_total 2.0\\n", "ttrv_adapter_misses_total")
    2.0
    """
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return float(value)
    return None


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def ci_text(interval: list[float] | None) -> str:
    """A 95% interval as a table shows it.

    >>> ci_text([0.98, 1.0412]), ci_text(None)
    ('0.980–1.041', '-')
    """
    return "-" if interval is None else f"{interval[0]:.3f}–{interval[1]:.3f}"


def met_mark(ok: bool | None) -> str:
    """A table cell for a target check: yes, NO, or '-' when there is no target or no value."""
    if ok is None:
        return "-"
    return "[green]yes[/green]" if ok else "[red]NO[/red]"
