"""Adaptation gain: does label-free TTRV adaptation raise held-out accuracy, against a random-reward control?

    .venv/bin/python -m bench.adaptation_gain [--shifts contrast,brightness] [--seeds 5] [--json-out r.json]

For each built-in shift (at one severity), each seed and each reward (`ttrv`, `majority` and the `random`
control), the built-in model gets a fresh LoRA and is adapted on the shift's 400 unlabeled adaptation rows,
then scored greedily on the shift's 497 labeled held-out rows and on the clean held-out rows. Every reward
runs the same seeds, so each reward starts from the same LoRA initialisation and the same first rollouts.

One run mirrors `adapter.offline.run_offline` step for step (same seeding, same `Policy`, same `adapt`), and
adds what `run_offline` does not measure: accuracy on a second file (clean) and the distribution of the
adapted model's greedy answers (to detect a collapse onto one class). The quick check (`--verify`) runs
`run_offline` itself once and checks that it reports the same before/after accuracy.

A gain is "real" only if mean(reward) - mean(random) > max(std(reward), std(random)) and
mean(reward) > std(reward), with std the sample standard deviation over seeds of the held-out change.
A run "collapsed" if its held-out accuracy fell by more than 10 points, or if its last round's agreement
exceeded 0.98 while one answer class took more than half of the held-out greedy answers.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.console import Console

from adapter.digits.dataset import stream_name
from adapter.digits.shifts import SHIFTS
from adapter.digits.task import DEFAULT_SEVERITY
from adapter.rewards import REWARD_KINDS, RewardKind
from bench.common import make_console, write_json
from bench.gain_report import report_table, run_line
from bench.gain_runs import COLLAPSE_RULE, Evaluator, make_config, run_one, shared_config, verify_offline
from bench.gain_stats import CONTROL, REAL_GAIN_RULE, summarize_sweep
from bench.summary import headline
from stack.settings import StackSettings

DEFAULT_SHIFTS = tuple(SHIFTS)  # gaussian_noise, gaussian_blur, contrast, brightness, rotation
DEFAULT_REWARDS: tuple[RewardKind, ...] = ("ttrv", "majority", "random")
MODEL_NAME = "tiny-qwen2vl-digits-s0"


def _run_key(run: dict[str, Any]) -> tuple[str, str, int]:
    return run["shift"], run["reward"], run["seed"]


def _load_previous(json_out: Path | None, config: dict[str, Any], console: Console) -> list[dict[str, Any]]:
    """Runs already in `json_out` made with the same settings (reward aside), to resume or extend a sweep."""
    if json_out is None or not json_out.exists():
        return []
    previous = json.loads(json_out.read_text())
    if previous.get("config") != config:
        raise ValueError(f"{json_out} holds runs made with other settings; use another --json-out")
    console.print(f"read {len(previous['runs'])} earlier runs from {json_out}")
    return list(previous["runs"])


def run(
    shifts: Sequence[str] = DEFAULT_SHIFTS,
    severity: int = DEFAULT_SEVERITY,
    seeds: Sequence[int] = range(5),
    rewards: Sequence[RewardKind] = DEFAULT_REWARDS,
    *,
    overrides: dict[str, Any] | None = None,
    model_dir: Path | None = None,
    data_root: Path | None = None,
    json_out: Path | None = None,
    resume: bool = False,
    verify: bool = False,
    report_only: bool = False,
    threads: int = 1,
    console: Console | None = None,
) -> dict[str, Any]:
    """Adapt and score every (shift, seed, reward); returns (and writes to `json_out`) runs and summaries.

    `overrides` are `make_config` keywords (lr, epochs, passes, keep, kl_coef, min_agreement,
    records_per_round). With `resume`, runs already in `json_out` under the same settings are kept and not
    repeated; the results file is rewritten after every run, so an interrupted sweep loses at most one run.
    With `report_only`, nothing runs: the table and the summaries in `json_out` are rebuilt from its runs
    that match the grid (the runs themselves are kept as they are).
    """
    console = console or Console()
    torch.set_num_threads(threads)
    overrides = overrides or {}
    home = StackSettings().home
    model_dir = model_dir or home / "models" / MODEL_NAME
    data_root = data_root or home / "data"
    clean_eval = data_root / stream_name("clean", 0) / "eval.jsonl"
    missing = [
        p
        for p in [clean_eval] + [data_root / stream_name(s, severity) / "adapt.jsonl" for s in shifts]
        if not p.exists()
    ]
    if missing:
        raise FileNotFoundError(
            f"missing data: {', '.join(map(str, missing))}; write it with `ttrv data --shift <name> "
            f"--severity {severity}` (and `ttrv data --shift clean`)"
        )
    config = shared_config(overrides)
    runs = _load_previous(json_out, config, console) if resume or report_only else []
    done = {_run_key(r) for r in runs if r["severity"] == severity}
    started_at = datetime.now(UTC)
    evaluator = Evaluator()
    result: dict[str, Any] = {}

    def finish() -> dict[str, Any]:
        summary, gains = summarize_sweep(runs, severity, shifts, seeds, rewards)
        result.update(
            {
                "benchmark": "adaptation_gain",
                "started_at": started_at.isoformat(timespec="seconds"),
                "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": {
                    "cpu_count": os.cpu_count(),
                    "torch_threads": threads,
                    "platform": platform.platform(),
                    "torch": torch.__version__,
                },
                "model": str(model_dir),
                "severity": severity,
                "shifts": list(shifts),
                "seeds": list(seeds),
                "rewards": list(rewards),
                "overrides": overrides,
                "config": config,
                "criteria": {"real_gain": REAL_GAIN_RULE, "collapse": COLLAPSE_RULE},
                "summary": summary,
                "gains": gains,
                "runs": runs,
            }
        )
        if json_out is not None:
            write_json(json_out, result)
        return result

    for shift in shifts:
        data_dir = data_root / stream_name(shift, severity)
        for seed in seeds:
            for reward in rewards:
                if report_only or (shift, reward, seed) in done:
                    continue
                cfg = make_config(reward, **overrides)
                one = run_one(model_dir, data_dir, clean_eval, cfg, seed, evaluator)
                runs.append({"shift": shift, "severity": severity, "reward": reward, "seed": seed, **one})
                console.print(run_line(data_dir.name, reward, seed, one))
                finish()
    if verify and not report_only:
        shift, seed, reward = shifts[0], seeds[0], rewards[0]
        ours = next(r for r in runs if _run_key(r) == (shift, reward, seed) and r["severity"] == severity)
        check = verify_offline(
            model_dir, data_root / stream_name(shift, severity), make_config(reward, **overrides), seed, ours
        )
        result["verify"] = check
        console.print(
            f"verify against run_offline ({shift}, {reward}, seed {seed}): "
            f"before {check['run_offline_before']:.4f} vs {check['bench_before']:.4f}, "
            f"after {check['run_offline_after']:.4f} vs {check['bench_after']:.4f}: "
            + ("[green]match[/green]" if check["match"] else "[red]MISMATCH[/red]")
        )
    finish()
    console.print(report_table(result))
    if json_out is not None:
        console.print(f"results written to {json_out}")
    return result


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a `run` result, for `bench.run_all`'s table: per shift, each reward's mean
    held-out change and its margin over the random control (points), with the verdict of `real_gain`."""
    rows = []
    for shift, cells in result["summary"].items():
        for reward, cell in cells.items():
            std = "n/a" if math.isnan(cell["delta_std"]) else f"{cell['delta_std']:.1f}"
            rows.append(
                headline(f"{shift}: {reward} change", round(cell["delta_mean"], 2), "pts",
                         note=f"± {std}, n={cell['n']}, base {cell['before_mean']:.1f}")
            )  # fmt: skip
        for reward, verdict in result["gains"].get(shift, {}).items():
            if not verdict["seeds"]:
                continue
            row = headline(f"{shift}: {reward} − {CONTROL}", round(verdict["vs_control_points"], 2), "pts")
            row["target"] = "> max(std) and mean > std"
            row["met"] = verdict["real"] if verdict["decidable"] else None  # one seed: no std, no verdict
            noise = "n/a" if math.isnan(verdict["noise_points"]) else f"{verdict['noise_points']:.1f}"
            row["note"] = f"noise {noise}, n={len(verdict['seeds'])} paired"
            rows.append(row)
    return {"benchmark": "adaptation_gain", "headlines": rows}


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def main(
    shifts: Annotated[str, typer.Option(help="comma-separated built-in shifts")] = ",".join(DEFAULT_SHIFTS),
    severity: Annotated[int, typer.Option(help="shift severity, 1..5")] = DEFAULT_SEVERITY,
    seeds: Annotated[int, typer.Option(help="number of seeds, starting at --seed-start")] = 5,
    seed_start: Annotated[int, typer.Option(help="first seed")] = 0,
    rewards: Annotated[str, typer.Option(help="comma-separated rewards; 'random' is the control")] = ",".join(
        DEFAULT_REWARDS
    ),
    lr: Annotated[float | None, typer.Option(help="override RoundConfig.lr")] = None,
    epochs: Annotated[int | None, typer.Option(help="override RoundConfig.epochs")] = None,
    passes: Annotated[int | None, typer.Option(help="override AdaptConfig.passes")] = None,
    keep: Annotated[int | None, typer.Option(help="override RoundConfig.keep")] = None,
    kl_coef: Annotated[float | None, typer.Option(help="override RoundConfig.kl_coef")] = None,
    min_agreement: Annotated[float | None, typer.Option(help="override RoundConfig.min_agreement")] = None,
    records_per_round: Annotated[
        int | None, typer.Option(help="override AdaptConfig.records_per_round")
    ] = None,
    model: Annotated[Path | None, typer.Option(help="model folder (default: the built-in model)")] = None,
    data_root: Annotated[Path | None, typer.Option(help="data folder (default: <TTRV_HOME>/data)")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json-out", help="write all raw numbers here (replaced unless --resume)")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="keep runs already in --json-out (same settings) and run only the rest")
    ] = False,
    verify: Annotated[
        bool, typer.Option(help="also run adapter.offline.run_offline once and check it agrees")
    ] = False,
    report_only: Annotated[
        bool, typer.Option(help="run nothing: re-summarise the matching runs in --json-out")
    ] = False,
    threads: Annotated[int, typer.Option(help="torch threads (1 leaves the other cores to others)")] = 1,
) -> None:
    """Held-out accuracy change from label-free adaptation, per shift and reward, against a random control."""
    console = make_console(140)
    shift_list = _split(shifts)
    unknown = [s for s in shift_list if s not in SHIFTS]
    if unknown:
        raise typer.BadParameter(
            f"unknown shifts {unknown}; choose from {', '.join(SHIFTS)}", param_hint="--shifts"
        )
    reward_names = _split(rewards)
    bad = [r for r in reward_names if r not in REWARD_KINDS]
    reward_list = [k for r in reward_names for k in REWARD_KINDS if k == r]  # typed as RewardKind
    if bad:
        raise typer.BadParameter(
            f"unknown rewards {bad}; choose from {', '.join(REWARD_KINDS)}", param_hint="--rewards"
        )
    if (resume or report_only) and json_out is None:
        raise typer.BadParameter("--resume and --report-only need --json-out", param_hint="--json-out")
    overrides = {
        k: v
        for k, v in {
            "lr": lr,
            "epochs": epochs,
            "passes": passes,
            "keep": keep,
            "kl_coef": kl_coef,
            "min_agreement": min_agreement,
            "records_per_round": records_per_round,
        }.items()
        if v is not None
    }
    try:
        run(
            shift_list,
            severity,
            range(seed_start, seed_start + seeds),
            reward_list,
            overrides=overrides,
            model_dir=model,
            data_root=data_root,
            json_out=json_out,
            resume=resume,
            verify=verify,
            report_only=report_only,
            threads=threads,
            console=console,
        )
    except (FileNotFoundError, ValueError) as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(1) from None


if __name__ == "__main__":
    typer.run(main)
