"""The hot-swap benchmark's arithmetic: windows, swap timings and per-request samples in, numbers out.

Pure functions of what `bench.hot_swap` recorded (all times are `time.perf_counter()` seconds of the one
benchmark process), so they are tested without a stack.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from bench.load import Sample
from bench.stats import paired_ratio_ci, pct, ratio

FIRST_ANSWER_MAX_S = 0.5  # every swap: candidate registered -> first answer by it
P95_RATIO_MAX = 1.5  # p95 latency in swap windows at most 1.5 x that in quiet windows
WindowKind = Literal["quiet", "swap"]


@dataclass(frozen=True)
class Window:
    kind: WindowKind
    pair: int  # windows of one pair are adjacent: the bootstrap resamples pairs
    start_s: float
    end_s: float


@dataclass(frozen=True)
class SwapTiming:
    version: int
    digit: int  # what the version answers
    previous: int
    registered_s: float  # just before `Registry.register`: the candidate is saved, the clock starts
    loaded_s: float  # `Lifecycle.load_candidate` returned
    promoted_s: float  # `Lifecycle.promote` returned: the pointer has moved
    window_end_s: float  # end of the swap's window (the old version's unload should fall inside it)


def in_window(samples: Sequence[Sample], window: Window) -> list[Sample]:
    """The requests sent during the window (a request belongs to the window it started in)."""
    return [s for s in samples if window.start_s <= s.start_s < window.end_s]


def first_answer_s(samples: Sequence[Sample], swap: SwapTiming) -> float | None:
    """Seconds from the candidate's registration to the first completed answer that names it.

    >>> t = SwapTiming(3, 7, 2, registered_s=10.0, loaded_s=10.1, promoted_s=10.2, window_end_s=14.0)
    >>> s = [Sample(0, 10.0, 10.3, 200, 2), Sample(1, 10.25, 10.4, 200, 3), Sample(2, 10.3, 10.35, 200, 3)]
    >>> round(first_answer_s(s, t), 3)
    0.35
    """
    ends = [s.end_s for s in samples if s.ok and s.version == swap.version]
    return min(ends) - swap.registered_s if ends else None


def in_flight(samples: Sequence[Sample], swaps: Sequence[SwapTiming]) -> list[Sample]:
    """Requests in flight at some moment of a swap call (registration to promoted): the ones a swap can
    slow down directly, a small share of a swap window's requests.

    >>> t = SwapTiming(1, 1, 0, registered_s=1.0, loaded_s=1.1, promoted_s=1.2, window_end_s=4.0)
    >>> s = [Sample(0, 0.8, 0.95, 200), Sample(1, 0.9, 1.05, 200), Sample(2, 1.15, 1.3, 200),
    ...      Sample(3, 1.2, 1.3, 200)]
    >>> [x.image for x in in_flight(s, [t])]
    [1, 2]
    """
    return [s for s in samples if any(s.start_s < t.promoted_s and s.end_s > t.registered_s for t in swaps)]


def latency_stats(samples: Sequence[Sample], wall_s: float) -> dict[str, Any]:
    """Latency percentiles (ms) of successful requests, throughput over `wall_s`, and failures.

    >>> s = [Sample(0, 0.0, 0.1, 200), Sample(1, 0.0, 0.3, 200), Sample(2, 0.1, 0.2, 503)]
    >>> stats = latency_stats(s, wall_s=1.0)
    >>> stats["p50_ms"], stats["ok"], stats["failed"], stats["throughput_rps"]
    (200.0, 2, 1, 2.0)
    """
    ok_ms = np.array([1000 * s.latency_s for s in samples if s.ok], dtype=np.float64)
    return {
        "requests": len(samples),
        "ok": int(ok_ms.size),
        "failed": len(samples) - int(ok_ms.size),
        "p50_ms": pct(ok_ms, 50),
        "p95_ms": pct(ok_ms, 95),
        "mean_ms": round(float(ok_ms.mean()), 3) if ok_ms.size else None,
        "wall_s": round(wall_s, 3),
        "throughput_rps": round(ok_ms.size / wall_s, 3) if wall_s > 0 else None,
    }


def spread(values: Sequence[float | None]) -> dict[str, float | None]:
    """p50 and max of per-swap values; a missing value (a version never answered) makes max None.

    >>> spread([0.2, 0.4, 0.3]), spread([0.2, None])
    ({'p50': 0.3, 'max': 0.4}, {'p50': 0.2, 'max': None})
    """
    known = [v for v in values if v is not None]
    return {
        "p50": round(statistics.median(known), 4) if known else None,
        "max": round(max(known), 4) if known and len(known) == len(values) else None,
    }


def swap_rows(samples: Sequence[Sample], swaps: Sequence[SwapTiming], grace_s: float) -> list[dict[str, Any]]:
    """Per swap: how long each step took, when its first answer came, and what its answers said."""
    rows = []
    for swap in swaps:
        served = [s for s in samples if s.ok and s.version == swap.version]
        rows.append(
            {
                "version": swap.version,
                "previous": swap.previous,
                "digit": swap.digit,
                "load_s": round(swap.loaded_s - swap.registered_s, 4),
                "promote_s": round(swap.promoted_s - swap.loaded_s, 4),
                "swap_call_s": round(swap.promoted_s - swap.registered_s, 4),
                "first_answer_s": _round(first_answer_s(samples, swap)),
                "served": len(served),
                "other_answers": sum(s.answer != str(swap.digit) for s in served),
                "unload_in_window": swap.promoted_s + grace_s < swap.window_end_s,
            }
        )
    return rows


def summarize(
    samples: Sequence[Sample],
    windows: Sequence[Window],
    swaps: Sequence[SwapTiming],
    grace_s: float,
    seed: int = 0,
) -> dict[str, Any]:
    """Everything the report shows: per-swap rows, their spread, quiet vs swap windows, failures."""
    rows = swap_rows(samples, swaps, grace_s)
    by_kind: dict[str, list[Sample]] = {"quiet": [], "swap": []}
    wall = {"quiet": 0.0, "swap": 0.0}
    groups: dict[str, dict[int, np.ndarray]] = {"quiet": {}, "swap": {}}
    for window in windows:
        inside = in_window(samples, window)
        by_kind[window.kind] += inside
        wall[window.kind] += window.end_s - window.start_s
        groups[window.kind][window.pair] = np.array([s.latency_s for s in inside if s.ok])
    latency = {kind: latency_stats(by_kind[kind], wall[kind]) for kind in by_kind}
    quiet, swap = latency["quiet"], latency["swap"]
    ratios = {
        "p50": ratio(swap["p50_ms"], quiet["p50_ms"]),
        "p95": ratio(swap["p95_ms"], quiet["p95_ms"]),
        "throughput": ratio(swap["throughput_rps"], quiet["throughput_rps"]),
    }
    caught = latency_stats(in_flight(samples, swaps), sum(t.promoted_s - t.registered_s for t in swaps))
    pairs = sorted(groups["quiet"].keys() & groups["swap"].keys())
    ci95 = paired_ratio_ci([groups["swap"][p] for p in pairs], [groups["quiet"][p] for p in pairs], seed=seed)
    first = spread([r["first_answer_s"] for r in rows])
    failed = [s for s in samples if not s.ok]
    checked = [r for r in rows if r["served"]]
    met = {
        "first_answer": first["max"] is not None and first["max"] <= FIRST_ANSWER_MAX_S,
        "p95_ratio": ratios["p95"] is not None and ratios["p95"] <= P95_RATIO_MAX,
        "failures": not failed,
    }
    return {
        "swaps": rows,
        "first_answer_s": first,
        "swap_call_s": spread([r["swap_call_s"] for r in rows]),
        "load_s": spread([r["load_s"] for r in rows]),
        "promote_s": spread([r["promote_s"] for r in rows]),
        "latency": latency,
        "ratios": ratios,
        "in_swap_call": {**caught, "p95_vs_quiet": ratio(caught["p95_ms"], quiet["p95_ms"])},
        "ci95": ci95,
        "requests": len(samples),
        "failed": len(failed),
        "failed_statuses": dict(Counter(str(s.status) for s in failed)),
        "answers_checked": sum(r["served"] for r in checked),
        "answers_other_than_version": sum(r["other_answers"] for r in checked),
        "met": met,
        "all_met": all(met.values()),
    }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)
