"""The adaptation-gain benchmark's arithmetic: per-run numbers in, per-cell summaries over seeds and the
verdict of each reward against the random-reward control out.

A gain is "real" only if mean(reward) - mean(random) > max(std(reward), std(random)) and
mean(reward) > std(reward), with std the sample standard deviation over seeds of the held-out change.
Pure functions of the runs' dicts, so they run without a model.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from adapter.rewards import RewardKind

CONTROL: RewardKind = "random"
REAL_GAIN_RULE = "mean - mean(random) > max(std, std(random)) and mean > std (sample std over seeds, points)"


def _std(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) >= 2 else float("nan")


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean, sample std, min and max of the held-out change (points) over one cell's seeds, and the rest."""
    deltas = [r["delta_points"] for r in runs]
    clean_after = [100 * r["clean_after"] for r in runs]
    return {
        "n": len(runs),
        "seeds": [r["seed"] for r in runs],
        "before_mean": 100 * statistics.fmean(r["before"] for r in runs),
        "delta_mean": statistics.fmean(deltas),
        "delta_std": _std(deltas),
        "delta_min": min(deltas),
        "delta_max": max(deltas),
        "after_mean": 100 * statistics.fmean(r["after"] for r in runs),
        "clean_before_mean": 100 * statistics.fmean(r["clean_before"] for r in runs),
        "clean_after_mean": statistics.fmean(clean_after),
        "clean_after_min": min(clean_after),
        "clean_delta_mean": statistics.fmean(r["clean_delta_points"] for r in runs),
        "final_agreement_mean": statistics.fmean(r["final_agreement"] for r in runs),
        "collapsed": sum(bool(r["collapse_reasons"]) for r in runs),
        "wall_s_mean": statistics.fmean(r["wall_s"] for r in runs),
    }


def real_gain(cell: dict[str, Any], control: dict[str, Any]) -> dict[str, Any]:
    """The brief's test: mean - mean(control) > max(std, std(control)) and mean > std."""
    margin = cell["delta_mean"] - control["delta_mean"]
    noise = max(cell["delta_std"], control["delta_std"])
    decidable = not (math.isnan(noise) or math.isnan(cell["delta_std"]))
    return {
        "vs_control_points": margin,
        "noise_points": noise,
        "real": decidable and margin > noise and cell["delta_mean"] > cell["delta_std"],
        "decidable": decidable,
    }


def gain_verdict(runs: Sequence[dict[str, Any]], reward: str) -> dict[str, Any]:
    """`real_gain` of `reward` against the control over the seeds both have (one shift's runs)."""
    seeds = sorted(
        {r["seed"] for r in runs if r["reward"] == reward}
        & {r["seed"] for r in runs if r["reward"] == CONTROL}
    )
    if not seeds:
        return {"seeds": [], "real": False, "decidable": False, "paired_differences": []}
    cell, control = (
        summarize(
            sorted((r for r in runs if r["reward"] == kind and r["seed"] in seeds), key=lambda r: r["seed"])
        )
        for kind in (reward, CONTROL)
    )
    return {
        "seeds": seeds,
        "delta_mean": cell["delta_mean"],
        "delta_std": cell["delta_std"],
        "control_delta_mean": control["delta_mean"],
        "control_delta_std": control["delta_std"],
        **real_gain(cell, control),
        "paired_differences": paired_differences(runs, reward),
    }


def paired_differences(runs: Sequence[dict[str, Any]], reward: str) -> list[float]:
    """Per seed: held-out change under `reward` minus under the control (same seed, same start)."""
    by = {(r["reward"], r["seed"]): r["delta_points"] for r in runs}
    return [
        by[reward, s] - by[CONTROL, s]
        for s in sorted({r["seed"] for r in runs})
        if (CONTROL, s) in by and (reward, s) in by
    ]


def summarize_sweep(
    runs: Sequence[dict[str, Any]],
    severity: int,
    shifts: Sequence[str],
    seeds: Sequence[int],
    rewards: Sequence[str],
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The summaries and the verdicts of a sweep's grid, from those of `runs` that fall in it: per shift that
    has runs, each reward's `summarize` over its seeds and, where the control ran, each other reward's
    `gain_verdict`."""
    wanted = [
        r
        for r in runs
        if r["severity"] == severity
        and r["shift"] in shifts
        and r["seed"] in seeds
        and r["reward"] in rewards
    ]
    summary: dict[str, dict[str, Any]] = {}
    gains: dict[str, dict[str, Any]] = {}
    for shift in shifts:
        cells = {}
        for reward in rewards:
            cell_runs = sorted(
                (r for r in wanted if r["shift"] == shift and r["reward"] == reward),
                key=lambda r: r["seed"],
            )
            if cell_runs:
                cells[reward] = summarize(cell_runs)
        if not cells:
            continue
        summary[shift] = cells
        if CONTROL in cells:
            shift_runs = [r for r in wanted if r["shift"] == shift]
            gains[shift] = {reward: gain_verdict(shift_runs, reward) for reward in cells if reward != CONTROL}
    return summary, gains
