"""The benchmarks' arithmetic, on recorded numbers made up by hand: no stack, no timing."""

from __future__ import annotations

import asyncio
import doctest
import importlib
import json
import math
from typing import Any

import httpx
import numpy as np
import pytest

from bench import gateway_overhead, hot_swap, run_all
from bench.load import ClosedLoop, Sample
from bench.stats import paired_ratio_ci
from bench.swap_drive import Plan
from bench.swap_summary import SwapTiming, Window, summarize

DOCTESTED = ("common", "stats", "summary", "swap_summary", "swap_adapters", "swap_drive", "run_all")


@pytest.mark.parametrize("name", DOCTESTED)
def test_doctests(name: str) -> None:
    # bench/ is not among the doctest paths of pytest's configuration: its examples are checked here.
    failed, attempted = doctest.testmod(importlib.import_module(f"bench.{name}"))
    assert attempted > 0
    assert failed == 0


def trace() -> tuple[list[Sample], list[Window], list[SwapTiming]]:
    """Two window pairs of 2 s. Quiet windows: 100 ms requests. Swap windows: 100 ms, and three of 300 ms
    around the swaps; v1 answers "1" (one reply says "7"), v2 answers "4"; one 503 in the second swap
    window."""
    windows = [Window("quiet", 0, 0.0, 2.0), Window("swap", 0, 2.0, 4.0),
               Window("swap", 1, 4.0, 6.0), Window("quiet", 1, 6.0, 8.0)]  # fmt: skip
    swaps = [
        SwapTiming(1, 1, 0, registered_s=2.5, loaded_s=2.6, promoted_s=2.7, window_end_s=4.0),
        SwapTiming(2, 4, 1, registered_s=4.5, loaded_s=4.55, promoted_s=4.6, window_end_s=6.0),
    ]
    samples = []
    for k in range(80):
        start = round(0.1 * k, 2)
        version = 0 if start < 2.7 else 1 if start < 4.6 else 2
        answer = {0: "3", 1: "1", 2: "4"}[version]
        samples.append(Sample(0, start, start + 0.1, 200, version, answer))
    samples.append(Sample(1, 2.6, 2.9, 200, 0, "3"))  # in flight during the swaps
    samples.append(Sample(1, 2.65, 2.95, 200, 0, "3"))
    samples.append(Sample(1, 4.55, 4.85, 200, 1, "1"))
    samples.append(Sample(2, 3.05, 3.15, 200, 1, "7"))  # an answer v1 was not trained to give
    samples.append(Sample(3, 5.0, 5.2, 503))
    return samples, windows, swaps


def test_swap_summary_by_hand() -> None:
    samples, windows, swaps = trace()
    result = summarize(samples, windows, swaps, grace_s=1.0)
    first, second = result["swaps"]
    # v1's first answer: the request sent at 2.7 s ends at 2.8 s, 0.3 s after registration at 2.5 s.
    assert first["first_answer_s"] == pytest.approx(0.3)
    assert second["first_answer_s"] == pytest.approx(0.2)  # sent at 4.6 s, done at 4.7 s; registered at 4.5 s
    assert first["swap_call_s"] == pytest.approx(0.2)
    assert first["load_s"] == pytest.approx(0.1)
    assert result["first_answer_s"] == {"p50": pytest.approx(0.25), "max": pytest.approx(0.3)}
    assert first["other_answers"] == 1
    assert second["other_answers"] == 0
    assert first["unload_in_window"]  # promoted at 2.7 s + 1 s grace < 4.0 s
    assert result["failed"] == 1
    assert result["failed_statuses"] == {"503": 1}
    assert result["latency"]["swap"]["failed"] == 1
    assert result["latency"]["quiet"]["failed"] == 0
    assert result["latency"]["quiet"]["p50_ms"] == pytest.approx(100.0)
    assert result["latency"]["quiet"]["p95_ms"] == pytest.approx(100.0)
    # Swap windows: 41 replies of 100 ms and 3 of 300 ms. p50 stays; p95 sits at rank 0.95 x 43 = 40.85,
    # between the last 100 ms reply (rank 40) and the first 300 ms one: 100 + 0.85 x 200 = 270 ms.
    assert result["ratios"]["p50"] == pytest.approx(1.0)
    assert result["latency"]["swap"]["p95_ms"] == pytest.approx(270.0)
    assert result["ratios"]["p95"] == pytest.approx(2.7, abs=1e-3)
    assert result["met"] == {"first_answer": True, "p95_ratio": False, "failures": False}
    assert not result["all_met"]
    # In flight during a swap call (2.5-2.7 s, 4.5-4.6 s): a few 100 ms replies and all three 300 ms ones.
    assert result["in_swap_call"]["p95_vs_quiet"] == pytest.approx(3.0, abs=1e-3)
    assert result["in_swap_call"]["failed"] == 0
    assert result["ci95"]["p95"] is not None
    json.dumps(result)  # goes into the JSON as it is


def test_a_version_that_never_answered_fails_the_first_answer_target() -> None:
    samples, windows, swaps = trace()
    kept = [s for s in samples if s.version != 2]
    result = summarize(kept, windows, swaps, grace_s=1.0)
    assert result["swaps"][1]["first_answer_s"] is None
    assert result["first_answer_s"]["max"] is None
    assert not result["met"]["first_answer"]


def test_paired_ratio_ci_brackets_a_noisy_ratio() -> None:
    rng = np.random.default_rng(0)
    den = [rng.lognormal(4.0, 0.3, 100) for _ in range(10)]
    num = [1.2 * d * rng.lognormal(0.0, 0.05, 100) for d in den]
    ci = paired_ratio_ci(num, den)
    for name in ("p50", "p95"):
        interval = ci[name]
        assert interval is not None
        low, high = interval
        assert low < high
        assert low < 1.25
        assert high > 1.15
    assert paired_ratio_ci(num[:1], den[:1]) == {"p50": None, "p95": None}


def test_plan_rejects_windows_too_short_for_the_swap() -> None:
    Plan().check()
    with pytest.raises(ValueError, match="window"):
        Plan(window_s=1.5, grace_s=1.0).check()
    with pytest.raises(ValueError, match="2 swaps"):
        Plan(swaps=1).check()


def test_closed_loop_records_status_version_and_answer() -> None:
    async def answer(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)  # a reply takes a moment: the other clients and the test get to run
        image = json.loads(request.content)["image"]
        if image == "Mw==":  # base64 of b"3"
            return httpx.Response(503, json={"error": {"message": "busy"}})
        return httpx.Response(200, json={"adapter_version": 7, "answer": "5"})

    async def go() -> list[Sample]:
        bodies = [json.dumps({"image": s}).encode() for s in ("MA==", "MQ==", "Mg==", "Mw==")]
        async with ClosedLoop(
            "http://gw/v1/answer", bodies, 2, transport=httpx.MockTransport(answer)
        ) as load:
            while len(load.samples) < 12:
                await asyncio.sleep(0)
        return load.samples

    samples = asyncio.run(go())
    assert {s.image for s in samples} == {0, 1, 2, 3}
    for s in samples:
        assert s.end_s >= s.start_s
        if s.image == 3:
            assert (s.status, s.version, s.answer) == (503, None, None)
        else:
            assert (s.status, s.version, s.answer) == (200, 7, "5")


def hot_swap_result(p95_ratio: float, first_max: float | None, failed: int) -> dict[str, Any]:
    return {
        "first_answer_s": {"p50": 0.2, "max": first_max},
        "swap_call_s": {"p50": 0.1, "max": 0.15},
        "ratios": {"p50": 1.05, "p95": p95_ratio, "throughput": 0.95},
        "ci95": {"p50": [1.0, 1.1], "p95": [0.9, 1.4]},
        "in_swap_call": {"ok": 40, "p95_vs_quiet": 1.4},
        "swaps": [{}, {}],
        "failed": failed,
        "requests": 1000,
        "adapter_misses": 0.0,
    }


def test_hot_swap_headlines_check_the_issue_targets() -> None:
    rows = {r["metric"]: r for r in hot_swap.summary(hot_swap_result(1.2, 0.31, 0))["headlines"]}
    assert rows["time to first answer, max over swaps"]["met"] is True
    assert rows["p95 latency swap/quiet"]["met"] is True
    assert rows["failed requests"]["met"] is True
    assert rows["swap call (load + promote), p50"]["met"] is None  # reported, no target
    missed = {r["metric"]: r for r in hot_swap.summary(hot_swap_result(1.6, None, 2))["headlines"]}
    assert missed["time to first answer, max over swaps"]["met"] is False
    assert missed["p95 latency swap/quiet"]["met"] is False
    assert missed["failed requests"]["met"] is False


def test_gateway_overhead_headlines_per_level() -> None:
    level = {
        "concurrency": 16,
        "ratios": {"p50": 1.04, "p95": 1.2, "throughput": 0.93},
        "ci95": {"p50": [1.0, 1.08], "p95": None, "throughput": [0.9, 0.96]},
        "direct": {"failed": 0},
        "gateway": {"failed": 1},
    }
    rows = gateway_overhead.summary({"levels": [level]})["headlines"]
    assert [(r["metric"], r["met"]) for r in rows] == [
        ("c=16 p50 latency gateway/direct", True),
        ("c=16 throughput gateway/direct", False),
        ("c=16 failed requests", False),
    ]


def test_adaptation_gain_headlines_leave_one_seed_undecided() -> None:
    from bench import adaptation_gain

    cell = {"delta_mean": 4.0, "delta_std": math.nan, "n": 1, "before_mean": 81.1}
    result = {
        "summary": {"contrast": {"ttrv": cell, "random": {**cell, "delta_mean": -1.0}}},
        "gains": {"contrast": {"ttrv": {"seeds": [0], "vs_control_points": 5.0, "noise_points": math.nan,
                                        "real": False, "decidable": False}}},
    }  # fmt: skip
    rows = adaptation_gain.summary(result)["headlines"]
    assert [r["metric"] for r in rows] == [
        "contrast: ttrv change",
        "contrast: random change",
        "contrast: ttrv − random",
    ]
    assert rows[2]["value"] == 5.0
    assert rows[2]["met"] is None


def test_run_all_table_shows_a_benchmark_that_did_not_finish() -> None:
    outcomes: dict[str, dict[str, Any]] = {
        "hot_swap": {"summary": hot_swap.summary(hot_swap_result(1.2, 0.31, 0))},
        "adaptation_gain": {"error": "FileNotFoundError: missing data"},
    }
    assert run_all.tally(outcomes) == (4, 5)  # 4 targets met of hot_swap's 4, and the missing benchmark
    table = run_all.headline_table(outcomes, "t")
    assert table.row_count == 7 + 1
