"""The demo's picture (Grafana cannot run here): served accuracy and drift over time, version changes marked.

Accuracy is a rolling mean over the last `window` labeled answers, from the replies themselves; drift
scores are what Prometheus scraped from the worker during the run (`ttrv_drift_score{signal}`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clients.models import AdapterMove
from stack.scenario import Served


def rolling(values: Sequence[bool], window: int) -> list[float]:
    """Mean of the last `window` values at each point (fewer at the start).

    >>> rolling([True, False, True, True], 2)
    [1.0, 0.5, 0.5, 1.0]
    """
    out, total = [], 0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_run(
    served: Sequence[Served],
    base_correct: dict[str, bool],
    moves: Sequence[AdapterMove],
    drift: Sequence[dict[str, Any]],
    started: float,
    out: Path,
    window: int = 50,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display here; write the file only
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True, height_ratios=[3, 2])
    times = [e.t for e in served]
    top.plot(
        times,
        rolling([e.correct for e in served], window),
        color="tab:blue",
        label=f"served accuracy (last {window})",
    )
    known = [e for e in served if e.row_id in base_correct]
    top.plot(
        [e.t for e in known],
        rolling([base_correct[e.row_id] for e in known], window),
        color="grey",
        linestyle="--",
        label="base model on the same requests",
    )
    phases: dict[str, float] = {}
    for e in served:
        phases.setdefault(e.phase, e.t)
    for name, t in phases.items():
        top.axvline(t, color="grey", linestyle=":", linewidth=1)
        top.text(t, 1.01, f" {name}", transform=top.get_xaxis_transform(), fontsize=9, color="grey")
    for move in moves:
        t = move.ts - started
        if t < 0:
            continue
        rollback = move.kind == "rollback"
        for axis in (top, bottom):
            axis.axvline(t, color="tab:red" if rollback else "tab:green", alpha=0.5, linewidth=1)
        top.text(t, 0.02, f"v{move.version}", transform=top.get_xaxis_transform(), fontsize=8, rotation=90,
                 color="tab:red" if rollback else "tab:green")  # fmt: skip
    top.set_ylabel("accuracy")
    top.set_ylim(0.5, 1.02)
    top.legend(loc="lower left")
    top.set_title("ttrv demo: served accuracy and drift (green: promotion, red: rollback)")
    # The input shift is a standardized distance (unbounded); the other two are in 0..1: two scales.
    inputs_axis = bottom.twinx()
    end = times[-1] if times else 0.0
    for series in drift:
        points = [(float(t) - started, float(v)) for t, v in series["values"] if float(t) - started <= end]
        signal = series["metric"].get("signal", "?")
        axis = inputs_axis if signal == "inputs" else bottom
        style = {"color": "tab:purple", "linestyle": "--"} if signal == "inputs" else {}
        axis.plot([p[0] for p in points], [p[1] for p in points], label=signal, **style)
    bottom.set_ylabel("answers / agreement drift")
    inputs_axis.set_ylabel("input shift (std. units)", color="tab:purple")
    bottom.set_xlabel("seconds since the stream started")
    if drift:
        lines = bottom.get_legend_handles_labels()
        extra = inputs_axis.get_legend_handles_labels()
        bottom.legend(lines[0] + extra[0], lines[1] + extra[1], loc="upper left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
