"""The configuration reference (docs/configuration.md), generated from the settings classes themselves.

Each process has one pydantic-settings class; this renders every field as its `TTRV_*` variable, default
and help text, so the documentation cannot drift from the code (a test compares the file to this output).
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings

from adapter.settings import WorkerSettings
from clients.settings import ClientSettings
from server.settings import GatewaySettings
from stack.settings import StackSettings

SECTIONS: list[tuple[str, type[BaseSettings]]] = [
    ("Gateway (`ttrv serve`, server/settings.py)", GatewaySettings),
    ("Adaptation worker (`ttrv worker`, adapter/settings.py)", WorkerSettings),
    ("Local stack launcher (`ttrv demo`, stack/settings.py)", StackSettings),
    ("Python client and CLI (clients/settings.py)", ClientSettings),
]


def _default(value: object) -> str:
    if isinstance(value, Path):
        value = str(value).replace(str(Path.home()), "~")
    text = "(required)" if value is Ellipsis else repr(value) if value is not None else "unset"
    return f"`{text}`"


def settings_reference() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Every setting is an environment variable with the `TTRV_` prefix, read by one pydantic-settings",
        "class per process. Generated from the code by `python -m stack.reference`; a test keeps it in sync.",
    ]
    for title, cls in SECTIONS:
        lines += ["", f"## {title}", "", "| variable | default | what |", "|---|---|---|"]
        for name, field in cls.model_fields.items():
            factory = field.default_factory
            default = field.default if factory is None else factory()  # type: ignore[call-arg]
            lines.append(f"| `TTRV_{name.upper()}` | {_default(default)} | {field.description or ''} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    Path("docs/configuration.md").write_text(settings_reference())
