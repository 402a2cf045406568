"""Rollout throughput: one round's worth of rollouts, before and after, side by side in one run.

    .venv/bin/python -m bench.rollouts [--configs before,after,block16=--block-size 16] [--out r.json]
    .venv/bin/python -m bench.rollouts --configs "" --worker-log old=a/worker.log --worker-log b/worker.log

For each engine configuration (bench/rollout_drive.py: `before` is the flags and per-token LoRA ops this
project had until now, `after` is stack/vllm.py with the grouped ops, others are `after` with flags changed)
it starts vLLM alone on free ports (logs under `TTRV_HOME/runs/bench/rollouts/`), loads a rank-8 LoRA as the
worker trains them (language model + vision) under two names, and measures:
- rounds of rollouts as the worker sends them (its `VllmRollouts`, 32 requests in flight, n=32, T=1, priority
  10, fresh images each round), with the base model and with the adapter: wall time, generated tokens per
  second, the prefix cache's hit rate;
- served answers (greedy, priority 0, the demo's 2 requests/s, open loop, on the other adapter name) in a
  quiet window and beside back-to-back candidate rounds: p50 / p95 latency;
- on `after`: one round sent in waves of a few records, or with more requests in flight, and answers beside
  rounds sent that way.
Configurations run one after the other, each vLLM alone on the cores. `--worker-log` adds the worker's rounds
from a log (a `ttrv demo` run's `runs/demo/worker.log`): the share of round time spent on rollouts and the new
records adapted per second, against the demo's 2 requests/s.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from bench.common import fmt, machine_info, make_console, write_json
from bench.cpu import busy_cores
from bench.local import served_model
from bench.rollout_drive import (
    WORKER_MODE,
    EngineConfig,
    Images,
    Mode,
    Plan,
    measure_engine,
    parse_config,
    prepare_adapter,
    running_engine,
)
from bench.rollout_report import print_report
from bench.rollout_stats import DEMO_RATE, SPEEDUP_MIN, comparison, engine_stats, parse_rounds, worker_stats
from bench.summary import headline
from stack.ports import free_port
from stack.process import LaunchError
from stack.settings import StackSettings

DEFAULT_WAVES = ",".join(f"{m.kind}:{m.size}" for m in Plan.wave_modes)
# before, after, a whole burst per step (1024 sequences), and the block size 16 (it does not start: the CPU
# attention kernels need a multiple of 32 for this model's head size; the report says so)
DEFAULT_CONFIG_TEXT = (
    "before,after,budget1024=--max-num-seqs 1024 --max-num-batched-tokens 8192,block16=--block-size 16"
)
DEFAULT_CONFIGS = tuple(parse_config(c) for c in DEFAULT_CONFIG_TEXT.split(","))


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a `run` result, for `bench.run_all`'s table."""
    c, stats = result["comparison"], result["stats"]
    rows = []
    if c:
        b, a = stats["before"], stats["after"]
        rows += [
            headline("adapter rollouts, before/after wall", c["adapter_speedup"], "x", ">=", SPEEDUP_MIN,
                     note=f"{fmt(b['adapter']['wall_s'], 2)} -> {fmt(a['adapter']['wall_s'], 2)} s a round"),
            headline("base rollouts, before/after wall", c["base_speedup"], "x",
                     note=f"{fmt(b['base']['wall_s'], 2)} -> {fmt(a['base']['wall_s'], 2)} s per round"),
        ]  # fmt: skip
    for name, st in stats.items():
        s = st["serving"]
        rows.append(
            headline(f"{name}: answer p95 beside rounds", s["beside_rounds"]["p95_ms"], " ms",
                     note=f"quiet {fmt(s['quiet']['p95_ms'], 0)} ms; failed "
                     f"{s['quiet']['failed'] + s['beside_rounds']['failed']}")
        )  # fmt: skip
    for name, w in result.get("worker_logs", {}).items():
        rows.append(
            headline(f"worker ({name}): new records/s", w["records_per_s"], "", ">=", DEMO_RATE,
                     note=f"{w['rounds']} rounds; rollouts: {fmt(w['rollout_share'], 2)} of round time")
        )  # fmt: skip
    return {"benchmark": "rollouts", "headlines": rows}


def last_error(log: Path) -> str | None:
    """The last exception line of a vLLM log (its reason for exiting), if any."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    errors = [line.split("] ", 1)[-1].strip() for line in lines if "Error: " in line]
    causes = [e for e in errors if "root cause above" not in e]  # vLLM's own summary points back to it
    found = causes or errors
    return found[-1] if found else None


def worker_logs(paths: list[str]) -> dict[str, dict[str, Any]]:
    """`[label=]path` of worker logs -> their rounds' totals (label: the file's parent folder)."""
    out = {}
    for item in paths:
        label, _, path = item.rpartition("=")
        file = Path(path)
        rounds = parse_rounds(file.read_text(errors="replace"))
        out[label or file.parent.name or str(file)] = {
            **worker_stats(rounds),
            "log": str(file),
            "per_round": rounds,
        }
    return out


def run(
    configs: tuple[EngineConfig, ...] = DEFAULT_CONFIGS,
    plan: Plan | None = None,
    *,
    logs: list[str] | None = None,
    settings: StackSettings | None = None,
    json_out: Path | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Measure every configuration in turn (each with its own vLLM), print the tables, return the results."""
    plan = plan or Plan()
    console = console or Console()
    settings = settings or StackSettings()
    started_at = datetime.now(UTC)
    run_dir = settings.runs_dir / "bench" / f"rollouts-{started_at:%Y%m%d-%H%M%S}"
    result: dict[str, Any] = {
        "benchmark": "rollouts",
        "started_at": started_at.isoformat(timespec="seconds"),
        "machine": {**machine_info(), "other_busy_cores": busy_cores()},
        "plan": {**asdict(plan), "in_flight": WORKER_MODE.size},
        "logs": str(run_dir),
        "configs": {},
        "stats": {},
        "failed": {},  # configurations whose vLLM did not start: the reason
    }
    if configs:
        model = served_model(settings, console)
        images = Images()
        with console.status("training the adapter"):
            adapter, banned = prepare_adapter(
                model, run_dir / "adapters", settings.vllm_max_lora_rank, images
            )
        try:
            for config in configs:
                flags = config.flags(settings)
                console.print(f"{config.name}: LoRA ops {config.ops}, flags {flags}")
                port = free_port(settings.host)
                log = run_dir / f"vllm-{config.name}.log"
                try:
                    with (
                        console.status(f"{config.name}: starting vLLM on port {port}"),
                        running_engine(config, model, port, settings, log) as (url, up),
                    ):
                        console.print(f"{config.name}: vLLM ready in {up:.0f} s; measuring")
                        measured = asyncio.run(measure_engine(url, config, adapter, banned, images, plan))
                except LaunchError as err:  # e.g. flags this vLLM refuses: the other configurations still run
                    result["failed"][config.name] = last_error(log) or str(err).splitlines()[0]
                    console.print(
                        f"[red]{config.name}: vLLM did not start[/red]: {result['failed'][config.name]}"
                    )
                    continue
                result["configs"][config.name] = {
                    "ops": config.ops, "flags": flags, "startup_s": round(up, 1), "raw": measured
                }  # fmt: skip
                result["stats"][config.name] = engine_stats(measured)
                if json_out is not None:
                    write_json(json_out, result)
        finally:
            shutil.rmtree(run_dir / "adapters", ignore_errors=True)
    result["comparison"] = comparison(result["stats"])
    result["worker_logs"] = worker_logs(logs or [])
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    print_report(result, console)
    if json_out is not None:
        write_json(json_out, result)
        console.print(f"results written to {json_out}")
    return result


def main(
    configs: Annotated[
        str,
        typer.Option(
            help="comma-separated engine configurations: before, after, NAME=--flag value ... (after "
            "with flags changed); empty: none (only --worker-log)"
        ),
    ] = DEFAULT_CONFIG_TEXT,
    records: Annotated[int, typer.Option(help="records per round")] = Plan.records,
    samples: Annotated[int, typer.Option(help="samples per record (n)")] = Plan.samples,
    max_tokens: Annotated[int, typer.Option(help="longest sampled answer, tokens")] = Plan.max_tokens,
    repeats: Annotated[int, typer.Option(help="rounds per model and configuration")] = Plan.repeats,
    rate: Annotated[float, typer.Option(help="served answers per second")] = Plan.rate,
    window_s: Annotated[
        float, typer.Option(help="serving window, seconds (quiet, and beside rounds)")
    ] = Plan.window_s,
    waves: Annotated[
        str, typer.Option(help="modes of the wave study: in_flight:N or waves:N, comma-separated")
    ] = DEFAULT_WAVES,
    waves_on: Annotated[str, typer.Option(help="configuration the wave study runs on")] = Plan.waves_on,
    worker_log: Annotated[
        list[str] | None, typer.Option(help="[label=]path of a worker log to summarize; repeatable")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "--json-out", help="also write the results here")
    ] = None,
    check: Annotated[bool, typer.Option(help="exit 1 when the speed-up target is missed")] = False,
) -> None:
    """Rollout throughput before and after (LoRA ops, block size, step budget), serving beside rollouts."""
    console = make_console(140)
    try:
        chosen = tuple(parse_config(c.strip()) for c in configs.split(",") if c.strip())
        modes = tuple(Mode.parse(m.strip()) for m in waves.split(",") if m.strip())
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    plan = replace(
        Plan(), records=records, samples=samples, max_tokens=max_tokens, repeats=repeats, rate=rate,
        window_s=window_s, wave_modes=modes, waves_on=waves_on,
    )  # fmt: skip
    try:
        result = run(chosen, plan, logs=worker_log, json_out=out, console=console)
    except LaunchError as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(1) from None
    if check and not result["comparison"].get("met", False):
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
