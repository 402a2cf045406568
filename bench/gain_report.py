"""The adaptation-gain benchmark's report: one line per finished run, and the table of cells per shift and
reward with the verdicts against the control."""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table

from bench.gain_stats import CONTROL


def run_line(stream: str, reward: str, seed: int, one: dict[str, Any]) -> str:
    """The progress line of one finished run (`run_one`'s result), with why it collapsed if it did."""
    flag = f" [red]collapsed: {'; '.join(one['collapse_reasons'])}[/red]" if one["collapse_reasons"] else ""
    return (
        f"{stream} {reward} seed {seed}: "
        f"{100 * one['before']:.1f} -> {100 * one['after']:.1f} "
        f"({one['delta_points']:+.1f}), clean {100 * one['clean_after']:.1f}, "
        f"agreement {one['final_agreement']:.3f}, top answer {one['top_class']} "
        f"{one['top_class_share']:.0%}, {one['wall_s']:.0f} s{flag}"
    )


def _pm(cell: dict[str, Any]) -> str:
    std = "n/a" if math.isnan(cell["delta_std"]) else f"{cell['delta_std']:.1f}"
    return (
        f"{cell['delta_mean']:+.1f} ± {std}\n({cell['delta_min']:+.1f} .. {cell['delta_max']:+.1f})\n"
        f"clean {cell['clean_after_mean']:.1f} (min {cell['clean_after_min']:.1f})\n"
        f"collapsed {cell['collapsed']}/{cell['n']}"
    )


def report_table(result: dict[str, Any]) -> Table:
    rewards: list[str] = result["rewards"]
    tested = [r for r in rewards if r != CONTROL]
    seeds = result["seeds"]
    table = Table(
        title=f"Adaptation gain: change of held-out greedy accuracy, points (severity {result['severity']}, "
        f"seeds {seeds[0]}..{seeds[-1]} requested; n per cell under collapsed)",
        caption="cell: mean ± sample std (min .. max) over seeds; clean accuracy after adaptation, mean "
        "(lowest seed); runs collapsed. real?: mean - mean(control) > max(std, std(control)) and mean > std",
        show_lines=True,
    )
    table.add_column("shift")
    table.add_column("base", justify="right")
    for reward in rewards:
        table.add_column(reward + (" (control)" if reward == CONTROL else ""), justify="right")
    for reward in tested if CONTROL in rewards else []:
        table.add_column(f"{reward} real?", justify="center")
    for shift, cells in result["summary"].items():
        any_cell = next(iter(cells.values()))
        row = [shift, f"{any_cell['before_mean']:.1f}\nclean {any_cell['clean_before_mean']:.1f}"]
        row += [_pm(cells[r]) if r in cells else "-" for r in rewards]
        for reward in tested if CONTROL in rewards else []:
            verdict = result["gains"].get(shift, {}).get(reward)
            if verdict is None or not verdict["seeds"]:
                row.append("-")
            else:
                mark = "[green]yes[/green]" if verdict["real"] else "no"
                row.append(
                    f"{mark}\n{verdict['vs_control_points']:+.1f} vs ctrl\n"
                    f"noise {verdict['noise_points']:.1f}\nn={len(verdict['seeds'])} paired"
                )
        table.add_row(*row)
    return table
