"""The hot-swap benchmark's run on a live stack: a steady load, quiet and swap windows, swaps on the worker's
own path (`Lifecycle.load_candidate`, then `Lifecycle.promote`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from bench.common import metric_value
from bench.cpu import cpu_snapshot, other_busy_cores
from bench.load import ClosedLoop, Sample
from bench.local import LocalStack
from bench.swap_adapters import PreparedVersion
from bench.swap_summary import SwapTiming, Window, WindowKind

if TYPE_CHECKING:
    from adapter.lifecycle import Lifecycle

MISSES = "ttrv_adapter_misses_total"


@dataclass(frozen=True)
class Plan:
    swaps: int = 8
    concurrency: int = 4
    window_s: float = 4.0
    warmup_s: float = 3.0  # load before the first window: connections open, caches warm
    lead_s: float = 0.5  # into a swap window before the swap starts: the window also sees its run-up
    grace_s: float = 1.0  # the old version stays loaded this long after the pointer moved
    seed: int = 0

    def check(self) -> None:
        if self.swaps < 2 or self.concurrency < 1:
            raise ValueError("need at least 2 swaps (a bootstrap needs 2 window pairs) and concurrency >= 1")
        if self.window_s < self.lead_s + self.grace_s + 1.0:
            raise ValueError(
                f"the window must leave room for the lead ({self.lead_s} s), the swap and the grace period "
                f"({self.grace_s} s): at least {self.lead_s + self.grace_s + 1.0} s"
            )


def window_order(pair: int) -> tuple[WindowKind, WindowKind]:
    """quiet, swap | swap, quiet | quiet, swap | ...: each kind comes first in half of the pairs.

    >>> [window_order(k) for k in range(3)]
    [('quiet', 'swap'), ('swap', 'quiet'), ('quiet', 'swap')]
    """
    return ("quiet", "swap") if pair % 2 == 0 else ("swap", "quiet")


@dataclass(frozen=True)
class Trace:
    samples: list[Sample]
    windows: list[Window]
    swaps: list[SwapTiming]
    adapter_misses: float | None  # the gateway's counter at the end
    other_busy_cores: float | None  # cores other work kept busy during the windows


async def swap_in(life: Lifecycle, new: PreparedVersion, previous: int, window_end_s: float) -> SwapTiming:
    """Register the saved candidate (the clock starts), load it, promote it: what the worker does after a
    passed gate."""
    registered = time.perf_counter()
    entry = {"parent": new.parent, "bench": "hot_swap", "answers_digit": new.digit}
    await life.registry.register(new.version, str(new.path), entry)
    await life.load_candidate(new.version, new.path)
    loaded = time.perf_counter()
    await life.promote(new.version, previous)
    return SwapTiming(new.version, new.digit, previous, registered, loaded, time.perf_counter(), window_end_s)


def _lifecycle(stack: LocalStack, plan: Plan, adapter_dir: Path, model: Path, max_loras: int) -> Lifecycle:
    import redis.asyncio as aioredis

    from adapter.lifecycle import Lifecycle
    from adapter.metrics import WorkerMetrics
    from adapter.settings import WorkerSettings
    from core.engine import EngineClient
    from stack.vllm import SERVED_NAME
    from stack.worker import loaded_adapters_for

    settings = WorkerSettings(
        redis_url=stack.redis_url,
        vllm_url=stack.vllm_url,
        base_model_name=SERVED_NAME,
        model_path=model,
        adapter_dir=adapter_dir,
        swap_grace_s=plan.grace_s,
        max_loaded_adapters=loaded_adapters_for(max_loras),  # for the slots vLLM was started with
    )
    redis = aioredis.Redis.from_url(stack.redis_url)
    return Lifecycle(settings, redis, EngineClient(stack.vllm_url, timeout_s=60), WorkerMetrics())


async def drive(
    stack: LocalStack,
    bodies: Sequence[bytes],
    versions: Sequence[PreparedVersion],
    plan: Plan,
    adapter_dir: Path,
    model: Path,
    max_loras: int,
) -> Trace:
    """Load the gateway for the whole run; one quiet and one swap window per version, swapping to it."""
    life = _lifecycle(stack, plan, adapter_dir, model, max_loras)
    windows: list[Window] = []
    swaps: list[SwapTiming] = []
    try:
        async with ClosedLoop(f"{stack.gateway_url}/v1/answer", bodies, plan.concurrency) as load:
            await asyncio.sleep(plan.warmup_s)
            cpu_before, t = cpu_snapshot(stack.process_groups), time.perf_counter()
            first, previous = t, 0
            for pair, new in enumerate(versions):
                for kind in window_order(pair):
                    start, end = t, t + plan.window_s
                    if kind == "swap":
                        await asyncio.sleep(plan.lead_s)
                        swaps.append(await swap_in(life, new, previous, end))
                        previous = new.version
                    await asyncio.sleep(max(0.0, end - time.perf_counter()))
                    t = time.perf_counter()
                    windows.append(Window(kind, pair, start, t))
            other = other_busy_cores(cpu_before, cpu_snapshot(stack.process_groups), t - first)
    finally:
        await life.aclose()
        await life.engine.aclose()
        await life.redis.aclose()
    async with httpx.AsyncClient(timeout=10) as http:
        misses = metric_value((await http.get(f"{stack.gateway_url}/metrics")).text, MISSES)
    return Trace(load.samples, windows, swaps, misses, other)
