"""The rollout benchmark without a stack: its engine configurations, its arithmetic on made-up rounds and
answers, the worker-log parsing, its headline rows and its tables."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bench import rollouts
from bench.rollout_drive import AFTER, BEFORE, NEW_FLAGS, Mode, parse_config
from bench.rollout_stats import comparison, engine_stats, parse_rounds, worker_stats
from stack.settings import StackSettings
from stack.vllm import vllm_argv
from tests.deploy_tools import flag_value, flags


@pytest.mark.parametrize("name", ["rollout_drive", "rollout_stats"])
def test_doctests(name: str) -> None:
    failed, attempted = doctest.testmod(importlib.import_module(f"bench.{name}"))
    assert attempted > 0
    assert failed == 0


def test_before_is_the_old_flags_with_the_per_token_ops() -> None:
    settings = StackSettings()
    argv = BEFORE.argv(Path("/m"), 8100, settings)
    assert not set(NEW_FLAGS) & flags(argv), "before: vLLM's CPU defaults"
    assert flag_value(argv, "--max-lora-rank") == "16"
    assert BEFORE.ops == "per_token"
    assert BEFORE.flags(settings)["--block-size"] == "default"
    after = AFTER.argv(Path("/m"), 8100, settings)
    assert after == vllm_argv(Path("/m"), 8100, settings), "after: the local stack's own flags"
    assert AFTER.ops == "grouped"
    # Every other flag is the same in both.
    assert flags(argv) | set(NEW_FLAGS) == flags(after)


def test_other_configurations_change_flags_of_after() -> None:
    config = parse_config("seqs256=--max-num-seqs 256 --block-size 16")
    argv = config.argv(Path("/m"), 8100, StackSettings())
    assert (flag_value(argv, "--max-num-seqs"), flag_value(argv, "--block-size")) == ("256", "16")
    assert argv.count("--max-num-seqs") == 1
    for bad in ("x=--block-size", "x=block-size 16", "nameless"):
        with pytest.raises(ValueError, match=r"expected|give its flags"):
            parse_config(bad)
    with pytest.raises(ValueError, match="in_flight:N"):
        Mode.parse("burst:8")


def made_up_round(model: str, wall_s: float, records: int = 64) -> dict[str, Any]:
    return {"model": model, "mode": "32 in flight", "records": records, "samples": records * 32,
            "completion_tokens": records * 64, "prompt_tokens": records * 33, "failed": 0, "wall_s": wall_s,
            "cache_queries": 2112.0, "cache_hits": 2000.0}  # fmt: skip


def answers(*latencies_s: float) -> list[dict[str, Any]]:
    return [{"sent_s": k * 0.5, "latency_s": s, "ok": True} for k, s in enumerate(latencies_s)]


def measured(base_s: float, adapter_s: float, beside_s: float) -> dict[str, Any]:
    return {
        "rounds": [made_up_round("base", base_s), made_up_round("adapter", adapter_s)],
        "serving": {
            "quiet": answers(0.03, 0.04),
            "beside_rounds": answers(beside_s, beside_s),
            "rounds_beside": [made_up_round("adapter", adapter_s)],
        },
        "waves": [],
    }


def made_up_result() -> dict[str, Any]:
    stats = {"before": engine_stats(measured(5.4, 45.8, 0.5)), "after": engine_stats(measured(1.8, 1.5, 0.3))}
    configs = {
        name: {"ops": config.ops, "flags": config.flags(StackSettings()), "startup_s": 40.0}
        for name, config in (("before", BEFORE), ("after", AFTER))
    }
    log = (
        "INFO ttrv.worker round done: v1 from v0, 24 records (+0 replayed, 8 held out), 6 steps, 16.0 s "
        "(rollouts 4.0 s, training 8.0 s, gate 3.0 s, swap 1.0 s)\n"
    )
    return {
        "plan": {
            **{"records": 64, "samples": 32, "temperature": 1.0, "max_tokens": 8, "repeats": 1},
            **{"in_flight": 32, "rate": 2.0, "window_s": 20.0},
        },
        "machine": {"other_busy_cores": 0.0},
        "configs": configs,
        "stats": stats,
        "comparison": comparison(stats),
        "worker_logs": {"demo": worker_stats(parse_rounds(log))},
    }


def test_speedups_latency_and_worker_rate() -> None:
    result = made_up_result()
    c = result["comparison"]
    assert c["adapter_speedup"] == pytest.approx(45.8 / 1.5, abs=1e-3)
    assert c["met"]
    after = result["stats"]["after"]
    assert after["adapter"]["gen_tok_s"] == pytest.approx(64 * 64 / 1.5, abs=0.1)
    assert after["adapter"]["cache_hit_rate"] == pytest.approx(2000 / 2112, abs=1e-3)
    assert after["serving"]["beside_rounds"]["p95_ms"] == pytest.approx(300.0)
    worker = result["worker_logs"]["demo"]
    assert (worker["records_per_s"], worker["rollout_share"], worker["keeps_up"]) == (2.0, 0.25, True)


def test_headlines_and_tables() -> None:
    result = made_up_result()
    rows = {row["metric"]: row for row in rollouts.summary(result)["headlines"]}
    assert rows["adapter rollouts, before/after wall"]["met"] is True
    assert rows["worker (demo): new records/s"]["met"] is True
    assert rows["after: answer p95 beside rounds"]["value"] == pytest.approx(300.0)
    console = Console(record=True, width=200)
    rollouts.print_report(result, console)
    text = console.export_text()
    assert "30.5x" in text
    assert "the worker's rounds" in text


def test_parse_rounds_skips_other_lines() -> None:
    text = (
        "WARNING ttrv.worker candidate v2 not served: below the base\n"
        "INFO ttrv.worker round done: v2 from v1, 30 records (+2 replayed, 0 held out), 8 steps, 9.5 s "
        "(rollouts 1.2 s, training 6.0 s, gate 2.0 s, swap 0.3 s)\n"
    )
    (row,) = parse_rounds(text)
    got = (row["version"], row["parent"], row["replayed"], row["total_s"], row["swap_s"])
    assert got == (2, 1, 2, 9.5, 0.3)
    assert worker_stats([])["rounds"] == 0
