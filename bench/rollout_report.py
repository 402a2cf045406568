"""The rollout benchmark's tables: rounds per engine configuration side by side, serving beside rollouts,
wave modes, and the worker's round times from its log."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common import BUSY_WARNING, fmt, met_mark
from bench.rollout_stats import DEMO_RATE, SPEEDUP_MIN


def rounds_table(result: dict[str, Any]) -> Table:
    plan = result["plan"]
    table = Table(
        title=f"rollout round: {plan['records']} records x {plan['samples']} samples "
        f"(T={plan['temperature']}, "
        f"max {plan['max_tokens']} tokens), {plan['in_flight']} in flight, median of {plan['repeats']}"
    )
    columns = (
        "config", "LoRA ops", "block", "seqs", "batched tok", "max rank", "base s", "base gen tok/s",
        "adapter s", "adapter gen tok/s", "adapter/base", "cache hits", "vLLM start s",
    )  # fmt: skip
    for name in columns:
        table.add_column(name, justify="left" if name in ("config", "LoRA ops") else "right")
    for name, cfg in result["configs"].items():
        st, flags = result["stats"][name], cfg["flags"]
        table.add_row(
            name, cfg["ops"], flags["--block-size"], flags["--max-num-seqs"],
            flags["--max-num-batched-tokens"],
            flags["--max-lora-rank"], fmt(st["base"]["wall_s"], 2), fmt(st["base"]["gen_tok_s"], 0),
            fmt(st["adapter"]["wall_s"], 2), fmt(st["adapter"]["gen_tok_s"], 0),
            fmt(result["comparison"].get("adapter_over_base", {}).get(name), 2),
            fmt(st["adapter"]["cache_hit_rate"], 2), fmt(cfg["startup_s"], 0),
        )  # fmt: skip
    return table


def speedup_table(result: dict[str, Any]) -> Table:
    c = result["comparison"]
    table = Table(title="before -> after (wall time ratio; > 1 is faster)")
    for name in ("", "speed-up", "target", "met"):
        table.add_column(name, justify="left" if not name else "right")
    table.add_row("rollouts with an adapter", fmt(c.get("adapter_speedup"), 1) + "x", f">= {SPEEDUP_MIN:g}x",
                  met_mark(c.get("met")))  # fmt: skip
    table.add_row("rollouts of the base model", fmt(c.get("base_speedup"), 1) + "x", "", "")
    return table


def serving_table(result: dict[str, Any]) -> Table:
    plan = result["plan"]
    table = Table(
        title=f"served answers (greedy, priority 0, {plan['rate']:g}/s open loop, "
        f"{plan['window_s']:g} s windows): "
        "quiet vs. beside back-to-back candidate rounds"
    )
    columns = (
        "config", "quiet p50 / p95 ms", "beside rounds p50 / p95 ms", "max ms", "p95 ratio",
        "rollout gen tok/s beside", "failed",
    )  # fmt: skip
    for name in columns:
        table.add_column(name, justify="left" if name == "config" else "right")
    for name, st in result["stats"].items():
        s = st["serving"]
        q, b = s["quiet"], s["beside_rounds"]
        table.add_row(
            name, f"{fmt(q['p50_ms'], 0)} / {fmt(q['p95_ms'], 0)}",
            f"{fmt(b['p50_ms'], 0)} / {fmt(b['p95_ms'], 0)}",
            fmt(b["max_ms"], 0), fmt(s["p95_ratio"], 2), fmt(s["rollouts_beside"]["gen_tok_s_overall"], 0),
            f"{q['failed'] + b['failed']}/{q['n'] + b['n']}",
        )  # fmt: skip
    return table


def waves_table(result: dict[str, Any], name: str) -> Table:
    table = Table(
        title=f"{name}: one round sent in waves or with more in flight, and answers beside such rounds"
    )
    for col in (
        "mode",
        "round s",
        "gen tok/s",
        "answers p50 / p95 / max ms beside",
        "rollout gen tok/s beside",
    ):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for w in result["stats"][name]["waves"]:
        s = w["serving"]
        table.add_row(
            w["mode"], fmt(w["round"]["wall_s"], 2), fmt(w["round"]["gen_tok_s"], 0),
            f"{fmt(s['p50_ms'], 0)} / {fmt(s['p95_ms'], 0)} / {fmt(s['max_ms'], 0)}",
            fmt(w["rounds_beside"]["gen_tok_s_overall"], 0),
        )  # fmt: skip
    return table


def worker_table(logs: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="the worker's rounds (from its log)")
    columns = ("log", "rounds", "median round s", "rollouts share", "gate share", "new records/s", "keeps up")
    for col in columns:
        table.add_column(col, justify="left" if col == "log" else "right")
    for name, w in logs.items():
        table.add_row(
            name, str(w["rounds"]), fmt(w["round_s_median"], 1), fmt(w["rollout_share"], 2),
            fmt(w["gate_share"], 2), fmt(w["records_per_s"], 2), met_mark(w["keeps_up"]),
        )  # fmt: skip
    return table


def print_report(result: dict[str, Any], console: Console) -> None:
    for name, error in result.get("failed", {}).items():
        console.print(f"[red]{name} did not run:[/red] {error}")
    if result["configs"]:
        console.print(rounds_table(result))
        if result["comparison"]:
            console.print(speedup_table(result))
        console.print(serving_table(result))
        for name in result["stats"]:
            if result["stats"][name]["waves"]:
                console.print(waves_table(result, name))
    if result.get("worker_logs"):
        console.print(worker_table(result["worker_logs"]))
        console.print(
            "rollouts share: the rounds' own sampling over round time; gate share: the gate, which samples "
            "the held-out records from the candidate. new records/s: records a round used (trained on or "
            f"held out) per second of round time; keeps up: at least the demo's {DEMO_RATE:g} requests/s."
        )
    console.print(
        "gen tok/s: generated tokens per second of the round's wall time. cache hits: share of prompt tokens "
        "the prefix cache held (vLLM's counters). LoRA ops: per_token is vLLM's gather (with -1 zeroed), "
        "grouped is scripts/vllm_cpu_lora_ops.py. 'default' flags are vLLM's CPU defaults (block 128, 128 "
        "sequences, 2048 tokens)."
    )
    busy = result["machine"].get("other_busy_cores")
    if busy is not None and busy > BUSY_WARNING:
        console.print(f"[yellow]warning: other work kept {busy:.1f} cores busy just before the run[/yellow]")
