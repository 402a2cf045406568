"""The rollout benchmark's arithmetic: rounds to throughput, answers to latency, configurations to ratios, and
the worker's "round done" log lines to the share of round time spent on rollouts and records per second."""

from __future__ import annotations

import re
from collections.abc import Sequence
from statistics import median
from typing import Any

from bench.stats import pct, ratio

SPEEDUP_MIN = 10.0  # the target: rollouts with an adapter >= 10x faster than before
DEMO_RATE = 2.0  # requests/s of the demo's stream: the worker keeps up when it adapts at least this many


def _total(runs: Sequence[dict[str, Any]], key: str) -> float:
    return float(sum(r[key] for r in runs))


def round_stats(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Median over rounds of one kind: wall seconds, generated and prompt tokens per second, samples per
    second; the prefix-cache hit rate over all of them; failed requests.

    >>> one = {"records": 64, "samples": 2048, "completion_tokens": 4000, "prompt_tokens": 2112, "failed": 0}
    >>> r = round_stats([{**one, "wall_s": 2.0, "cache_queries": 100.0, "cache_hits": 90.0},
    ...                  {**one, "wall_s": 4.0, "cache_queries": 100.0, "cache_hits": 94.0}])
    >>> r["wall_s"], r["gen_tok_s"], r["cache_hit_rate"], r["prompt_tokens_per_record"]
    (3.0, 1500.0, 0.92, 33.0)
    """
    runs = [r for r in runs if r["wall_s"] > 0]  # a round cancelled before it sent anything
    if not runs:
        return {
            "rounds": 0,
            "wall_s": None,
            "gen_tok_s": None,
            "gen_tok_s_overall": None,
            "cache_hit_rate": None,
        }
    answered = _total(runs, "records") - _total(runs, "failed")
    queries = [r["cache_queries"] for r in runs if r.get("cache_queries") is not None]
    hits = [r["cache_hits"] for r in runs if r.get("cache_hits") is not None]
    return {
        "rounds": len(runs),
        "records": runs[0]["records"],
        "wall_s": round(median(r["wall_s"] for r in runs), 3),
        "wall_s_all": [round(r["wall_s"], 3) for r in runs],
        "gen_tok_s": round(median(r["completion_tokens"] / r["wall_s"] for r in runs), 1),
        "samples_s": round(median(r["samples"] / r["wall_s"] for r in runs), 1),
        # over all of them, cut-short rounds included (rounds beside a serving window)
        "gen_tok_s_overall": round(_total(runs, "completion_tokens") / _total(runs, "wall_s"), 1),
        "cancelled": sum(bool(r.get("cancelled")) for r in runs),
        "gen_tokens_per_sample": round(
            _total(runs, "completion_tokens") / max(1, _total(runs, "samples")), 2
        ),
        "prompt_tokens_per_record": round(_total(runs, "prompt_tokens") / max(1, answered), 1),
        "cache_hit_rate": round(sum(hits) / sum(queries), 3) if queries and sum(queries) else None,
        "failed": sum(r["failed"] for r in runs),
    }


def latency_stats(answers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """p50 / p95 / max latency (ms) of successful answers, and how many failed.

    >>> s = latency_stats([{"latency_s": 0.1, "ok": True}, {"latency_s": 0.3, "ok": True},
    ...                    {"latency_s": 9.0, "ok": False}])
    >>> s["p50_ms"], s["max_ms"], s["failed"], s["n"]
    (200.0, 300.0, 1, 3)
    """
    ok = [1000.0 * a["latency_s"] for a in answers if a["ok"]]
    return {
        "n": len(answers),
        "failed": len(answers) - len(ok),
        "p50_ms": pct(ok, 50, 1),
        "p95_ms": pct(ok, 95, 1),
        "max_ms": round(max(ok), 1) if ok else None,
    }


def engine_stats(measured: dict[str, Any]) -> dict[str, Any]:
    """One configuration's rounds by model, and its serving latency quiet and beside back-to-back rounds."""
    rounds = measured["rounds"]
    serving = measured["serving"]
    quiet, beside = latency_stats(serving["quiet"]), latency_stats(serving["beside_rounds"])
    return {
        "base": round_stats([r for r in rounds if r["model"] == "base"]),
        "adapter": round_stats([r for r in rounds if r["model"] == "adapter"]),
        "serving": {
            "quiet": quiet,
            "beside_rounds": beside,
            "p50_ratio": ratio(beside["p50_ms"], quiet["p50_ms"], 3),
            "p95_ratio": ratio(beside["p95_ms"], quiet["p95_ms"], 3),
            "rollouts_beside": round_stats(serving["rounds_beside"]),
        },
        "waves": [
            {
                "mode": w["mode"],
                "round": round_stats([w["round"]]),
                "serving": latency_stats(w["serving"]),
                "rounds_beside": round_stats(w["rounds_beside"]),
            }
            for w in measured.get("waves", [])
        ],
    }


def comparison(
    stats: dict[str, dict[str, Any]], before: str = "before", after: str = "after"
) -> dict[str, Any]:
    """Speed-ups of `after` over `before` (wall time ratios, > 1 is faster) and the adapter's cost.

    >>> st = {"before": {"base": {"wall_s": 5.4}, "adapter": {"wall_s": 45.8}},
    ...       "after": {"base": {"wall_s": 1.8}, "adapter": {"wall_s": 1.5}}}
    >>> c = comparison(st)
    >>> c["adapter_speedup"], c["base_speedup"], c["adapter_over_base"]["before"], c["met"]
    (30.533, 3.0, 8.481, True)
    """
    if before not in stats or after not in stats:
        return {}
    b, a = stats[before], stats[after]
    speedup = ratio(b["adapter"]["wall_s"], a["adapter"]["wall_s"], 3)
    return {
        "adapter_speedup": speedup,
        "base_speedup": ratio(b["base"]["wall_s"], a["base"]["wall_s"], 3),
        "adapter_over_base": {
            name: ratio(s["adapter"]["wall_s"], s["base"]["wall_s"], 3) for name, s in stats.items()
        },
        "met": speedup is not None and speedup >= SPEEDUP_MIN,
    }


# ---- the worker's log ------------------------------------------------------------------------------------

ROUND_LINE = re.compile(
    r"round done: v(?P<version>\d+) from v(?P<parent>\d+), (?P<records>\d+) records "
    r"\(\+(?P<replayed>\d+) replayed, (?P<held_out>\d+) held out\), (?P<steps>\d+) steps, "
    r"(?P<total>[\d.]+) s \((?P<timings>[^)]*)\)"
)
TIMING = re.compile(r"(\w+) ([\d.]+) s")


def parse_rounds(text: str) -> list[dict[str, Any]]:
    """The worker's "round done" lines (adapter/worker.py), in order.

    >>> line = ("INFO ttrv.worker round done: v3 from v2, 24 records (+0 replayed, 8 held out), 6 steps, "
    ...         "20.5 s (rollouts 12.0 s, training 5.0 s, gate 3.0 s, swap 0.5 s)")
    >>> parse_rounds(line)[0]["rollouts_s"], parse_rounds(line)[0]["new_records"]
    (12.0, 32)
    """
    rounds = []
    for m in ROUND_LINE.finditer(text):
        counts = ("version", "parent", "records", "replayed", "held_out", "steps")
        row: dict[str, Any] = {k: int(m.group(k)) for k in counts}
        row["total_s"] = float(m.group("total"))
        row.update({f"{name}_s": float(value) for name, value in TIMING.findall(m.group("timings"))})
        row["new_records"] = row["records"] + row["held_out"]
        rounds.append(row)
    return rounds


def worker_stats(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Totals over a run's rounds: the share of round time in rollouts (the round's own, and with the gate's,
    which samples the held-out records from the candidate), and new records adapted per second of round time
    (the worker's capacity; at >= DEMO_RATE it keeps up with the demo's stream).

    >>> w = worker_stats([{"total_s": 20.0, "rollouts_s": 12.0, "training_s": 5.0, "gate_s": 3.0,
    ...                    "swap_s": 0.0, "new_records": 32}])
    >>> w["rollout_share"], w["records_per_s"], w["keeps_up"]
    (0.6, 1.6, False)
    """
    total = sum(r["total_s"] for r in rounds)
    parts = {k: sum(r.get(f"{k}_s", 0.0) for r in rounds) for k in ("rollouts", "training", "gate", "swap")}
    records = sum(r["new_records"] for r in rounds)
    per_s = ratio(records, total, 3)
    return {
        "rounds": len(rounds),
        "round_s_total": round(total, 1),
        "round_s_median": round(median(r["total_s"] for r in rounds), 1) if rounds else None,
        **{f"{k}_s_total": round(v, 1) for k, v in parts.items()},
        "rollout_share": ratio(parts["rollouts"], total, 3),
        "gate_share": ratio(parts["gate"], total, 3),
        "new_records": records,
        "records_per_s": per_s,
        "keeps_up": per_s is not None and per_s >= DEMO_RATE,
    }
