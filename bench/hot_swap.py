"""Hot swap: how fast a saved candidate serves its first answer, and what swaps cost the requests meanwhile.

    .venv/bin/python -m bench.hot_swap [--swaps 8] [--concurrency 4] [--window-s 4] [--out r.json]

Starts its own Redis, vLLM and gateway on free ports (logs under `TTRV_HOME/runs/bench/`), trains `--swaps`
distinct adapter versions (each answers one digit: `bench.swap_adapters`), and puts a steady closed-loop
load on `POST /v1/answer` (`--concurrency` clients, the held-out digit images). While the load runs, time is
cut into windows of `--window-s`, in pairs of a quiet window (no swap) and a swap window, ordered quiet,
swap, swap, quiet, quiet, ... so that neither kind always comes first and machine noise falls on both
alike. In a swap window, after a short lead, the next version is registered as a saved candidate and swapped
in through the worker's own path, `Lifecycle.load_candidate` then `Lifecycle.promote`, with a short grace
(`--grace-s`) so the old version's unload falls inside the same window. The worker's gate is not run: it
takes what its checks take and is not part of the swap.

Per request the client keeps its send and reply times, status, `adapter_version` and answer. Reported: the
time from registration to the first completed answer naming the new version (p50 and max over swaps), the
swap call's own duration, p50/p95 latency of requests sent in swap windows against quiet windows with a
paired bootstrap interval over window pairs, failed requests, and the gateway's `ttrv_adapter_misses_total`.
The swap runs in this process's event loop next to the load, as a worker's coroutine would: its few calls
count against the swap windows.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console

from bench.common import ci_text, digit_pngs, fmt, machine_info, make_console, write_json
from bench.cpu import busy_cores
from bench.load import answer_bodies
from bench.local import local_stack, served_model
from bench.summary import headline
from bench.swap_drive import Plan, Trace, drive
from bench.swap_report import print_report
from bench.swap_summary import FIRST_ANSWER_MAX_S, P95_RATIO_MAX, summarize
from stack.process import LaunchError
from stack.settings import StackSettings


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a `run` result, for `bench.run_all`'s table."""
    first, call, r, ci = result["first_answer_s"], result["swap_call_s"], result["ratios"], result["ci95"]
    caught = result["in_swap_call"]
    rows = [
        headline("time to first answer, max over swaps", first["max"], "s", "<=", FIRST_ANSWER_MAX_S,
                 note=f"p50 {fmt(first['p50'], 3)} s over {len(result['swaps'])} swaps"),
        headline("swap call (load + promote), p50", call["p50"], "s", note=f"max {fmt(call['max'], 3)} s"),
        headline("p95 latency swap/quiet", r["p95"], "x", "<=", P95_RATIO_MAX, note=ci_text(ci["p95"])),
        headline("p50 latency swap/quiet", r["p50"], "x", note=ci_text(ci["p50"])),
        headline("p95 in flight during a swap call/quiet", caught["p95_vs_quiet"], "x",
                 note=f"{caught['ok']} requests"),
        headline("failed requests", result["failed"], "", "==", 0, note=f"of {result['requests']}"),
        headline("gateway adapter misses", result["adapter_misses"], "", "==", 0),
    ]  # fmt: skip
    return {"benchmark": "hot_swap", "headlines": rows}


def _measure(settings: StackSettings, model: Path, run_dir: Path, plan: Plan, console: Console) -> Trace:
    """Start the stack, train the versions (once vLLM is up, so they are numbered by its Redis), measure."""
    from adapter.digits.dataset import load_split
    from adapter.digits.task import PROMPT
    from bench.swap_adapters import prepare_versions

    pngs = digit_pngs()
    order = np.random.default_rng(plan.seed).permutation(len(pngs))  # the seed picks the images' order
    bodies = answer_bodies([pngs[i] for i in order], PROMPT)
    adapters = run_dir / "adapters"
    with local_stack(settings, model, run_dir, console) as stack:
        with console.status(f"training {plan.swaps} adapter versions"):
            t0 = time.monotonic()
            images = list(load_split("eval").images)
            versions = prepare_versions(model, adapters, stack.redis_url, images, plan.swaps, plan.seed)
        console.print(f"{plan.swaps} versions trained in {time.monotonic() - t0:.0f} s")
        with console.status(f"{plan.swaps} swaps: {2 * plan.swaps} windows of {plan.window_s:g} s"):
            return asyncio.run(drive(stack, bodies, versions, plan, adapters, model, settings.vllm_max_loras))


def run(
    plan: Plan | None = None,
    *,
    settings: StackSettings | None = None,
    json_out: Path | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Start a local stack, prepare the versions, measure; prints the tables and returns the results.

    Pass `Console(quiet=True)` to print nothing. Raises `LaunchError` when a process does not start, and
    `ValueError` on a bad plan.
    """
    plan = plan or Plan()
    plan.check()
    console = console or Console()
    settings = settings or StackSettings()
    started_at = datetime.now(UTC)
    run_dir = settings.runs_dir / "bench" / f"hot-swap-{started_at:%Y%m%d-%H%M%S}"
    model = served_model(settings, console)
    busy_before = busy_cores()  # before our own processes start: other work on the machine
    console.print(f"hot swap on {machine_info()['cpu_count']} CPU cores; model {model}; logs in {run_dir}")
    try:
        trace = _measure(settings, model, run_dir, plan, console)
    finally:
        for folder in ("redis", "adapters"):  # the records and versions written during the run
            shutil.rmtree(run_dir / folder, ignore_errors=True)
    machine = {**machine_info(), "busy_cores_before": busy_before, "other_busy_cores": trace.other_busy_cores}
    samples = [
        [s.image, round(s.start_s, 5), round(s.end_s, 5), s.status, s.version, s.answer]
        for s in trace.samples
    ]
    result: dict[str, Any] = {
        "benchmark": "hot_swap",
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "model": str(model),
        "logs": str(run_dir),
        "plan": asdict(plan),
        "targets": {"first_answer_max_s": FIRST_ANSWER_MAX_S, "p95_ratio_max": P95_RATIO_MAX, "failed": 0},
        **summarize(trace.samples, trace.windows, trace.swaps, plan.grace_s, plan.seed),
        "adapter_misses": trace.adapter_misses,
        "raw": {
            "windows": [asdict(w) for w in trace.windows],
            "swaps": [asdict(t) for t in trace.swaps],
            "samples_columns": ["image", "start_s", "end_s", "status", "adapter_version", "answer"],
            "samples": samples,
        },
    }
    print_report(result, console)
    if json_out is not None:
        write_json(json_out, result)
        console.print(f"results written to {json_out}")
    return result


def main(
    swaps: Annotated[int, typer.Option(help="swaps, each to a new version (and as many quiet windows)")] = 8,
    concurrency: Annotated[int, typer.Option(help="clients of the closed-loop load")] = 4,
    window_s: Annotated[float, typer.Option(help="length of each quiet or swap window, seconds")] = 4.0,
    grace_s: Annotated[float, typer.Option(help="old version's grace period after a swap, seconds")] = 1.0,
    seed: Annotated[int, typer.Option(help="seed of the adapters, the image order and the bootstrap")] = 0,
    out: Annotated[
        Path | None, typer.Option("--out", "--json-out", help="also write the results here")
    ] = None,
    check: Annotated[bool, typer.Option(help="exit 1 when a target is missed")] = False,
) -> None:
    """Time from a saved candidate to its first answer, and serving latency during swaps vs. without."""
    console = make_console(120)
    plan = Plan(swaps=swaps, concurrency=concurrency, window_s=window_s, grace_s=grace_s, seed=seed)
    try:
        plan.check()
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    try:
        result = run(plan, json_out=out, console=console)
    except LaunchError as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(1) from None
    if check and not result["all_met"]:
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
