"""Every benchmark, one after the other, and one table of their headline numbers against the targets.

    .venv/bin/python -m bench.run_all [--quick | --full] [--only hot_swap,...] [--out all.json]

Each benchmark starts (and stops) its own processes, prints its own tables as it goes, and returns its
results; its `summary(result)` gives the few numbers that go into the final table (`bench.summary`). They
run in this process, in turn, so that no two of them share the 2 cores. A benchmark that fails (a process
that does not start, missing data) is reported as such and the others still run.

Settings: by default the gateway-overhead and hot-swap benchmarks run with their own defaults, and the
adaptation gain on a reduced grid that still answers its question (contrast, seeds 0-2, TTRV against the
random-reward control; about 8 minutes), and the rollout benchmark on `before` and `after` only (about
5 minutes). `--full` runs the adaptation gain's full grid (5 shifts x 5 seeds x
3 rewards: over an hour); `--quick` is a smoke run of everything in about 5 minutes (few requests, 3 swaps,
one seed of one adaptation pass, one rollout round per model: its numbers say that things work, not how
well).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from bench.common import machine_info, make_console, met_mark, write_json
from bench.cpu import busy_cores

Mode = Literal["quick", "default", "full"]
BENCHMARKS = ("gateway_overhead", "hot_swap", "adaptation_gain", "rollouts")


@dataclass(frozen=True)
class GainGrid:
    """The adaptation-gain cells to run; None keeps that benchmark's own default (its full grid)."""

    shifts: Sequence[str] | None = ("contrast",)  # the shift where a gain was measured (bench/README.md)
    seeds: int | None = 3
    rewards: Sequence[str] | None = ("ttrv", "random")
    overrides: dict[str, Any] = field(default_factory=dict)


def gain_grid(mode: Mode) -> GainGrid:
    if mode == "full":
        return GainGrid(shifts=None, seeds=None, rewards=None)
    if mode == "quick":
        return GainGrid(seeds=1, overrides={"passes": 1})
    return GainGrid()


def run_gateway_overhead(mode: Mode, console: Console, _: GainGrid) -> dict[str, Any]:
    from bench import gateway_overhead

    # quick: enough blocks at c=16 (64 requests each) for a bootstrap interval; None: 300 at c=1, 600 at c=16
    requests = [60, 128] if mode == "quick" else None
    return gateway_overhead.run((1, 16), requests, console=console)


def run_hot_swap(mode: Mode, console: Console, _: GainGrid) -> dict[str, Any]:
    from bench import hot_swap
    from bench.swap_drive import Plan

    plan = Plan(swaps=3, window_s=3.0) if mode == "quick" else Plan()
    return hot_swap.run(plan, console=console)


def run_adaptation_gain(mode: Mode, console: Console, grid: GainGrid) -> dict[str, Any]:
    from bench import adaptation_gain

    kwargs: dict[str, Any] = {"overrides": grid.overrides, "console": console}
    if grid.shifts is not None:
        kwargs["shifts"] = list(grid.shifts)
    if grid.seeds is not None:
        kwargs["seeds"] = range(grid.seeds)
    if grid.rewards is not None:
        kwargs["rewards"] = list(grid.rewards)
    return adaptation_gain.run(**kwargs)


def run_rollouts(mode: Mode, console: Console, _: GainGrid) -> dict[str, Any]:
    from bench import rollouts
    from bench.rollout_drive import AFTER, BEFORE, WORKER_MODE, Plan

    # before and after only (the other configurations are studies); quick: one round each, short windows
    plan = Plan(repeats=1, window_s=10.0, wave_modes=(WORKER_MODE,)) if mode == "quick" else Plan()
    return rollouts.run((BEFORE, AFTER), plan, console=console)


Runner = Callable[[Mode, Console, GainGrid], dict[str, Any]]
RUNNERS: dict[str, Runner] = {
    "gateway_overhead": run_gateway_overhead,
    "hot_swap": run_hot_swap,
    "adaptation_gain": run_adaptation_gain,
    "rollouts": run_rollouts,
}


def summarize(name: str, result: dict[str, Any]) -> dict[str, Any]:
    """The benchmark's own `summary(result)`."""
    import importlib

    summary: dict[str, Any] = importlib.import_module(f"bench.{name}").summary(result)
    return summary


def format_value(value: float | None, unit: str) -> str:
    """A headline's value as the table shows it.

    >>> format_value(1.0234, "x"), format_value(0.31, "s"), format_value(5.8, "pts"), format_value(0, "")
    ('1.023x', '0.310 s', '+5.8 pts', '0')
    >>> format_value(None, "s")
    '-'
    """
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.3f}x"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "pts":
        return f"{value:+.1f} pts"
    return f"{value:g}{unit}"


def headline_table(outcomes: dict[str, dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for name in ("benchmark", "metric", "value", "target", "met", "note"):
        table.add_column(name, justify="right" if name in ("value", "target") else "left")
    for name, outcome in outcomes.items():
        if "error" in outcome:
            table.add_row(name, "[red]did not finish[/red]", "", "", met_mark(False), outcome["error"])
        for k, row in enumerate(outcome.get("summary", {}).get("headlines", [])):
            table.add_row(
                name if k == 0 else "", row["metric"], format_value(row["value"], row["unit"]), row["target"],
                met_mark(row["met"]), row["note"],
            )  # fmt: skip
        table.add_section()
    return table


def tally(outcomes: dict[str, dict[str, Any]]) -> tuple[int, int]:
    """(targets met, targets checked) over every headline that has a target; a failed benchmark misses one.

    >>> tally({"a": {"summary": {"headlines": [{"met": True}, {"met": None}, {"met": False}]}},
    ...        "b": {"error": "LaunchError: vLLM exited"}})
    (1, 3)
    """
    met = checked = 0
    for outcome in outcomes.values():
        if "error" in outcome:
            checked += 1
        for row in outcome.get("summary", {}).get("headlines", []):
            if row["met"] is not None:
                checked += 1
                met += bool(row["met"])
    return met, checked


def header_line(started: datetime, machine: dict[str, Any], mode: Mode) -> str:
    """Date, machine (cores, CPU model, OS) and how busy other work kept it just before the run."""
    cpu = machine["cpu_model"] or "unknown CPU model"
    busy = machine.get("busy_cores_before")
    other = "" if busy is None else f"; {busy:.2f} cores busy with other work before the start"
    when = f"{started:%Y-%m-%d %H:%M %Z}"
    return f"{when}; {machine['cpu_count']} CPU cores, {cpu}; {machine['platform']}{other}; mode {mode}"


def run_all(
    names: Sequence[str] = BENCHMARKS,
    mode: Mode = "default",
    grid: GainGrid | None = None,
    json_out: Path | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run the named benchmarks in turn; print the headline table; returns machine, outcomes and tally."""
    console = console or Console()
    grid = grid or gain_grid(mode)
    started = datetime.now().astimezone()
    machine = {**machine_info(), "busy_cores_before": busy_cores()}
    header = header_line(started, machine, mode)
    console.rule("bench.run_all")
    console.print(header)
    report: dict[str, Any] = {"started_at": started.isoformat(timespec="seconds"), "mode": mode,
                              "machine": machine, "benchmarks": {}}  # fmt: skip
    outcomes: dict[str, dict[str, Any]] = report["benchmarks"]
    for name in names:
        console.rule(name)
        t0 = time.monotonic()
        try:
            result = RUNNERS[name](mode, console, grid)
            outcomes[name] = {"summary": summarize(name, result), "result": result}
        except Exception as err:  # one broken benchmark must not hide the others' numbers
            console.print(f"[red]{name} failed:[/red] {traceback.format_exc(limit=3)}")
            outcomes[name] = {"error": f"{type(err).__name__}: {str(err)[:200]}"}
        outcomes[name]["wall_s"] = round(time.monotonic() - t0, 1)
        console.print(f"{name}: {outcomes[name]['wall_s'] / 60:.1f} min")
        if json_out is not None:  # after each benchmark: an interrupted run keeps what finished
            write_json(json_out, report)
    met, checked = tally(outcomes)
    report["targets_met"], report["targets_checked"] = met, checked
    console.rule("summary")
    table = headline_table(outcomes, f"all benchmarks: {header}")
    table.caption = "took " + ", ".join(f"{name} {o['wall_s'] / 60:.1f} min" for name, o in outcomes.items())
    console.print(table)
    console.print(f"targets met: {met} of {checked}")
    if json_out is not None:
        write_json(json_out, report)
        console.print(f"results written to {json_out}")
    return report


def main(
    quick: Annotated[bool, typer.Option(help="smoke run of everything (about 5 minutes)")] = False,
    full: Annotated[bool, typer.Option(help="the adaptation gain's full grid (over an hour)")] = False,
    only: Annotated[str, typer.Option(help="comma-separated benchmarks to run")] = ",".join(BENCHMARKS),
    gain_shifts: Annotated[str | None, typer.Option(help="adaptation gain: comma-separated shifts")] = None,
    gain_seeds: Annotated[int | None, typer.Option(help="adaptation gain: number of seeds")] = None,
    gain_rewards: Annotated[str | None, typer.Option(help="adaptation gain: comma-separated rewards")] = None,
    out: Annotated[Path | None, typer.Option("--out", "--json-out", help="write all results here")] = None,
    check: Annotated[bool, typer.Option(help="exit 1 when a target is missed")] = False,
) -> None:
    """Run every benchmark and print one table of ratios against their targets."""
    if quick and full:
        raise typer.BadParameter("choose --quick or --full, not both")
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise typer.BadParameter(f"unknown benchmarks {unknown}; choose from {', '.join(BENCHMARKS)}")
    mode: Mode = "quick" if quick else "full" if full else "default"
    grid = gain_grid(mode)
    grid = GainGrid(
        shifts=gain_shifts.split(",") if gain_shifts else grid.shifts,
        seeds=gain_seeds if gain_seeds is not None else grid.seeds,
        rewards=gain_rewards.split(",") if gain_rewards else grid.rewards,
        overrides=grid.overrides,
    )
    report = run_all(names, mode, grid, out, make_console(140))
    if check and report["targets_met"] < report["targets_checked"]:
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
