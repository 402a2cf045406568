"""Gateway overhead: `POST /v1/answer` against the same request sent straight to vLLM, side by side.

    .venv/bin/python -m bench.gateway_overhead [--requests 300,600] [--concurrency 1,16] [--json-out r.json]

Starts its own Redis, vLLM and gateway on free ports (logs under `TTRV_HOME/runs/bench/`), and stops them
at the end. For each concurrency both paths are warmed up, then each gets the same digit images in short
blocks, interleaved direct, gateway, gateway, direct, ...: each path goes first in half of the block pairs,
so neither gets more of vLLM's prefix and image caches or of a quiet machine. Latency is the client's time
to the complete reply; throughput is successful replies over the summed wall time of the path's blocks.

The direct body is what the gateway itself sends (`core.chat.image_chat_body` with the gateway's
defaults: greedy, n=1, 32 tokens, priority 0), so the difference is the gateway's own work: HTTP in and
out, JSON and base64 decoding, the image check, the backlog check and the Redis record write, the metrics.
The 95% intervals of the ratios come from resampling block pairs (a paired bootstrap). Below the table,
the gateway's mean latency is split (its handler, after it, outside the app; from its replies' `latency_ms`
and its `/metrics`) and the CPU time per request of each local process is given (from `/proc`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from bench.common import ci_text, digit_pngs, machine_info, make_console, write_json
from bench.cpu import busy_cores
from bench.local import local_stack, served_model
from bench.overhead_measure import (
    MAX_TOKENS,
    Endpoints,
    LevelPlan,
    Payloads,
    build_payloads,
    endpoints_of,
    measure_level,
    plan_levels,
)
from bench.overhead_report import print_report
from bench.overhead_stats import P50_RATIO_MAX, THROUGHPUT_RATIO_MIN, summarize_level
from bench.stats import BOOTSTRAP_RESAMPLES
from bench.summary import headline
from stack.process import LaunchError
from stack.settings import StackSettings


def measure(
    endpoints: Endpoints,
    payloads: Payloads,
    plans: Sequence[LevelPlan],
    timeout_s: float = 120.0,
    console: Console | None = None,
) -> list[dict[str, Any]]:
    """Measure both paths on a running stack, one concurrency after the other; one summary per level."""
    console = console or Console()

    async def all_levels() -> list[dict[str, Any]]:
        out, first_image = [], 0
        for plan in plans:
            with console.status(
                f"c={plan.concurrency}: {plan.warmup} warm-up + {plan.requests} requests per path, "
                f"blocks of {plan.block}"
            ):
                started = time.monotonic()
                data = await measure_level(endpoints, payloads, plan, first_image, timeout_s)
            console.print(f"c={plan.concurrency}: measured in {time.monotonic() - started:.1f} s")
            out.append(summarize_level(plan, data))
            first_image = (first_image + plan.warmup + plan.requests) % len(payloads)
        return out

    return asyncio.run(all_levels())


def run(
    concurrency: Sequence[int] = (1, 16),
    requests: Sequence[int] | None = None,
    *,
    block: int | None = None,
    warmup: int = 20,
    timeout_s: float = 120.0,
    settings: StackSettings | None = None,
    json_out: Path | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Start a local stack, measure both paths at each concurrency, print the table; returns the results.

    `requests` per path: None for the defaults (300 at c=1, 600 above), one number for every level, or one
    per level. `block`: requests per interleaved block (default max(20, 4 x concurrency)). `warmup`:
    requests per path before each level (at least 2 x concurrency). Pass `Console(quiet=True)` to print
    nothing. Raises `LaunchError` when a process does not start, and `ValueError` on bad arguments.
    """
    from adapter.digits.task import PROMPT

    console = console or Console()
    settings = settings or StackSettings()
    plans = plan_levels(concurrency, requests, block, warmup)
    started_at = datetime.now(UTC)
    run_dir = settings.runs_dir / "bench" / f"gateway-overhead-{started_at:%Y%m%d-%H%M%S}"
    model = served_model(settings, console)
    payloads = build_payloads(digit_pngs(), PROMPT)
    busy_before = busy_cores()  # before our own processes start: other work on the machine
    console.print(
        f"gateway overhead on {os.cpu_count()} CPU cores; model {model}; {len(payloads)} held-out digit "
        f"images; logs in {run_dir}"
    )
    try:
        # Both bodies ask for MAX_TOKENS: pinned in the gateway's environment so they agree.
        with local_stack(settings, model, run_dir, console, {"TTRV_MAX_TOKENS": str(MAX_TOKENS)}) as stack:
            levels = measure(endpoints_of(stack), payloads, plans, timeout_s, console)
    finally:
        shutil.rmtree(run_dir / "redis", ignore_errors=True)  # the records written during the run
    result: dict[str, Any] = {
        "benchmark": "gateway_overhead",
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**machine_info(), "busy_cores_before": busy_before},
        "model": str(model),
        "logs": str(run_dir),
        "targets": {"p50_ratio_max": P50_RATIO_MAX, "throughput_ratio_min": THROUGHPUT_RATIO_MIN},
        "method": {
            "interleave": "blocks direct,gateway,gateway,direct,... with the same images in each pair",
            "max_tokens": MAX_TOKENS,
            "timeout_s": timeout_s,
            "bootstrap_resamples": BOOTSTRAP_RESAMPLES,
        },
        "levels": levels,
        "all_met": all(level["met"]["p50"] and level["met"]["throughput"] for level in levels),
        "failed": sum(level["direct"]["failed"] + level["gateway"]["failed"] for level in levels),
    }
    print_report(result, console)
    if json_out is not None:
        write_json(json_out, result)
        console.print(f"results written to {json_out}")
    return result


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a `run` result, per concurrency level, for `bench.run_all`'s table."""
    rows = []
    for level in result["levels"]:
        c, r = level["concurrency"], level["ratios"]
        failed = level["direct"]["failed"] + level["gateway"]["failed"]
        rows += [
            headline(f"c={c} p50 latency gateway/direct", r["p50"], "x", "<=", P50_RATIO_MAX,
                     note=ci_text(level["ci95"]["p50"])),
            headline(f"c={c} throughput gateway/direct", r["throughput"], "x", ">=", THROUGHPUT_RATIO_MIN,
                     note=ci_text(level["ci95"]["throughput"])),
            headline(f"c={c} failed requests", failed, "", "==", 0),
        ]  # fmt: skip
    return {"benchmark": "gateway_overhead", "headlines": rows}


def _ints(text: str, option: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"expected comma-separated integers, got {text!r}", param_hint=option
        ) from None


def main(
    requests: Annotated[
        str | None,
        typer.Option(
            help="requests per path: one number for every level, or one per level (default 300,600)"
        ),
    ] = None,
    concurrency: Annotated[str, typer.Option(help="concurrency levels, comma-separated")] = "1,16",
    block: Annotated[
        int | None, typer.Option(help="requests per interleaved block (default max(20, 4 x concurrency))")
    ] = None,
    warmup: Annotated[
        int, typer.Option(help="warm-up requests per path before each level (at least 2 x concurrency)")
    ] = 20,
    timeout_s: Annotated[float, typer.Option(help="timeout of one request, in seconds")] = 120.0,
    json_out: Annotated[Path | None, typer.Option("--json-out", help="also write the results here")] = None,
    check: Annotated[bool, typer.Option(help="exit 1 when a target is missed or a request failed")] = False,
) -> None:
    """Overhead of the gateway (POST /v1/answer) against the same request sent straight to vLLM."""
    console = make_console(120)
    levels = _ints(concurrency, "--concurrency")
    counts = None if requests is None else _ints(requests, "--requests")
    try:
        plan_levels(levels, counts, block, warmup)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    try:
        result = run(levels, counts, block=block, warmup=warmup, timeout_s=timeout_s, json_out=json_out,
                     console=console)  # fmt: skip
    except LaunchError as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(1) from None
    if check and (not result["all_met"] or result["failed"]):
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
