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

import dataclasses
import json
import math
import os
import platform
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.console import Console
from rich.table import Table

from adapter.answers import extract_answer
from adapter.digits.dataset import stream_name
from adapter.digits.shifts import SHIFTS
from adapter.digits.task import DEFAULT_SEVERITY
from adapter.logprobs import Prompt
from adapter.offline import AdaptConfig, Row, adapt, prompts_for, read_rows, run_offline
from adapter.policy import Policy
from adapter.rewards import REWARD_KINDS, RewardKind
from bench.common import make_console, write_json
from bench.summary import headline
from stack.settings import StackSettings

DEFAULT_SHIFTS = tuple(SHIFTS)  # gaussian_noise, gaussian_blur, contrast, brightness, rotation
DEFAULT_REWARDS: tuple[RewardKind, ...] = ("ttrv", "majority", "random")
CONTROL: RewardKind = "random"
MODEL_NAME = "tiny-qwen2vl-digits-s0"
COLLAPSE_DROP_POINTS = 10.0  # held-out accuracy below before - 10 points
COLLAPSE_AGREEMENT = 0.98  # last round's mean majority share above this ...
COLLAPSE_TOP_SHARE = 0.5  # ... while one class takes more than half of the held-out greedy answers
EVAL_BATCH = 256  # rows per greedy call, as adapter.offline.greedy_accuracy


def greedy_answers(policy: Policy, prompts: Sequence[Prompt], max_new_tokens: int) -> list[str | None]:
    """Each prompt's greedy answer, extracted as serving does; `adapter.offline.greedy_accuracy`'s loop."""
    answers: list[str | None] = []
    for lo in range(0, len(prompts), EVAL_BATCH):
        for (completion,) in policy.sample(prompts[lo : lo + EVAL_BATCH], 1, 0.0, max_new_tokens):
            answers.append(extract_answer(policy.decode(completion), None))
    return answers


def accuracy(answers: Sequence[str | None], rows: Sequence[Row]) -> float:
    """Share of rows whose answer equals the label: `greedy_accuracy`'s comparison, on given answers."""
    correct = sum(
        a is not None and a == extract_answer(r.answer, None) for a, r in zip(answers, rows, strict=True)
    )
    return correct / max(1, len(rows))


def top_class(answers: Sequence[str | None]) -> tuple[str | None, float]:
    """The most frequent answer (None counts as a class: no answer) and its share of all answers."""
    if not answers:
        return None, 0.0
    answer, count = Counter(answers).most_common(1)[0]
    return answer, count / len(answers)


def collapse_reasons(before: float, after: float, agreement: float, top_share: float) -> list[str]:
    """Why a run counts as collapsed (empty: it did not). Accuracies are fractions."""
    reasons = []
    if (after - before) * 100 < -COLLAPSE_DROP_POINTS:
        reasons.append(f"held-out accuracy fell {100 * (before - after):.1f} points")
    if agreement > COLLAPSE_AGREEMENT and top_share > COLLAPSE_TOP_SHARE:
        reasons.append(f"agreement {agreement:.3f} with one class on {top_share:.0%} of answers")
    return reasons


class Evaluator:
    """Reads rows and builds prompts once per file (prompts do not depend on the weights)."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[list[Row], list[Prompt]]] = {}

    def load(self, policy: Policy, path: Path) -> tuple[list[Row], list[Prompt]]:
        if path not in self._cache:
            rows = read_rows(path)
            self._cache[path] = (rows, prompts_for(policy, rows))
        return self._cache[path]


def run_one(
    model_dir: Path,
    data_dir: Path,
    clean_eval: Path,
    cfg: AdaptConfig,
    seed: int,
    evaluator: Evaluator,
) -> dict[str, Any]:
    """One adaptation run, as `run_offline` does it, plus clean accuracy and the answer distribution."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    policy = Policy(model_dir, cfg.lora, seed=seed)
    train_rows = read_rows(data_dir / "adapt.jsonl")
    train_prompts = prompts_for(policy, train_rows)
    test_rows, test_prompts = evaluator.load(policy, data_dir / "eval.jsonl")
    clean_rows, clean_prompts = evaluator.load(policy, clean_eval)
    before_answers = greedy_answers(policy, test_prompts, cfg.max_new_tokens)
    clean_before = accuracy(greedy_answers(policy, clean_prompts, cfg.max_new_tokens), clean_rows)
    history = adapt(policy, train_prompts, cfg, seed)
    after_answers = greedy_answers(policy, test_prompts, cfg.max_new_tokens)
    clean_after = accuracy(greedy_answers(policy, clean_prompts, cfg.max_new_tokens), clean_rows)
    before, after = accuracy(before_answers, test_rows), accuracy(after_answers, test_rows)
    agreement = history[-1].agreement_mean if history else float("nan")
    top, top_share = top_class(after_answers)
    _, top_share_before = top_class(before_answers)
    return {
        "before": before,
        "after": after,
        "delta_points": 100 * (after - before),
        "clean_before": clean_before,
        "clean_after": clean_after,
        "clean_delta_points": 100 * (clean_after - clean_before),
        "final_agreement": agreement,
        "top_class": top,
        "top_class_share": top_share,
        "top_class_share_before": top_share_before,
        "collapse_reasons": collapse_reasons(before, after, agreement, top_share),
        "rounds": len(history),
        "steps": sum(s.steps for s in history),
        "wall_s": time.perf_counter() - started,
        "history": [s.as_dict() for s in history],
    }


def make_config(
    reward: RewardKind,
    *,
    lr: float | None = None,
    epochs: int | None = None,
    passes: int | None = None,
    keep: int | None = None,
    kl_coef: float | None = None,
    min_agreement: float | None = None,
    records_per_round: int | None = None,
) -> AdaptConfig:
    """`AdaptConfig()` with the reward set and any given override applied (None: the default)."""
    base = AdaptConfig()
    round_changes: dict[str, Any] = {"reward": reward}
    for name, value in (
        ("lr", lr),
        ("epochs", epochs),
        ("keep", keep),
        ("kl_coef", kl_coef),
        ("min_agreement", min_agreement),
    ):
        if value is not None:
            round_changes[name] = value
    changes: dict[str, Any] = {"round": dataclasses.replace(base.round, **round_changes)}
    if passes is not None:
        changes["passes"] = passes
    if records_per_round is not None:
        changes["records_per_round"] = records_per_round
    return dataclasses.replace(base, **changes)


def _std(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) >= 2 else float("nan")


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean, sample std, min and max of the held-out change (points) over one cell's seeds, and the rest."""
    deltas = [r["delta_points"] for r in runs]
    clean_after = [100 * r["clean_after"] for r in runs]
    return {
        "n": len(runs),
        "seeds": [r["seed"] for r in runs],
        "before_mean": 100 * statistics.fmean(r["before"] for r in runs),
        "delta_mean": statistics.fmean(deltas),
        "delta_std": _std(deltas),
        "delta_min": min(deltas),
        "delta_max": max(deltas),
        "after_mean": 100 * statistics.fmean(r["after"] for r in runs),
        "clean_before_mean": 100 * statistics.fmean(r["clean_before"] for r in runs),
        "clean_after_mean": statistics.fmean(clean_after),
        "clean_after_min": min(clean_after),
        "clean_delta_mean": statistics.fmean(r["clean_delta_points"] for r in runs),
        "final_agreement_mean": statistics.fmean(r["final_agreement"] for r in runs),
        "collapsed": sum(bool(r["collapse_reasons"]) for r in runs),
        "wall_s_mean": statistics.fmean(r["wall_s"] for r in runs),
    }


def real_gain(cell: dict[str, Any], control: dict[str, Any]) -> dict[str, Any]:
    """The brief's test: mean - mean(control) > max(std, std(control)) and mean > std."""
    margin = cell["delta_mean"] - control["delta_mean"]
    noise = max(cell["delta_std"], control["delta_std"])
    decidable = not (math.isnan(noise) or math.isnan(cell["delta_std"]))
    return {
        "vs_control_points": margin,
        "noise_points": noise,
        "real": decidable and margin > noise and cell["delta_mean"] > cell["delta_std"],
        "decidable": decidable,
    }


def gain_verdict(runs: Sequence[dict[str, Any]], reward: str) -> dict[str, Any]:
    """`real_gain` of `reward` against the control over the seeds both have (one shift's runs)."""
    seeds = sorted(
        {r["seed"] for r in runs if r["reward"] == reward}
        & {r["seed"] for r in runs if r["reward"] == CONTROL}
    )
    if not seeds:
        return {"seeds": [], "real": False, "decidable": False, "paired_differences": []}
    cell, control = (
        summarize(
            sorted((r for r in runs if r["reward"] == kind and r["seed"] in seeds), key=lambda r: r["seed"])
        )
        for kind in (reward, CONTROL)
    )
    return {
        "seeds": seeds,
        "delta_mean": cell["delta_mean"],
        "delta_std": cell["delta_std"],
        "control_delta_mean": control["delta_mean"],
        "control_delta_std": control["delta_std"],
        **real_gain(cell, control),
        "paired_differences": paired_differences(runs, reward),
    }


def paired_differences(runs: Sequence[dict[str, Any]], reward: str) -> list[float]:
    """Per seed: held-out change under `reward` minus under the control (same seed, same start)."""
    by = {(r["reward"], r["seed"]): r["delta_points"] for r in runs}
    return [
        by[reward, s] - by[CONTROL, s]
        for s in sorted({r["seed"] for r in runs})
        if (CONTROL, s) in by and (reward, s) in by
    ]


def _pm(cell: dict[str, Any]) -> str:
    std = "n/a" if math.isnan(cell["delta_std"]) else f"{cell['delta_std']:.1f}"
    return (
        f"{cell['delta_mean']:+.1f} ± {std}\n({cell['delta_min']:+.1f} .. {cell['delta_max']:+.1f})\n"
        f"clean {cell['clean_after_mean']:.1f} (min {cell['clean_after_min']:.1f})\n"
        f"collapsed {cell['collapsed']}/{cell['n']}"
    )


def report_table(result: dict[str, Any]) -> Table:
    rewards: list[str] = result["rewards"]
    tested = [r for r in rewards if r != CONTROL]
    seeds = result["seeds"]
    table = Table(
        title=f"Adaptation gain: change of held-out greedy accuracy, points (severity {result['severity']}, "
        f"seeds {seeds[0]}..{seeds[-1]} requested; n per cell under collapsed)",
        caption="cell: mean ± sample std (min .. max) over seeds; clean accuracy after adaptation, mean "
        "(lowest seed); runs collapsed. real?: mean - mean(control) > max(std, std(control)) and mean > std",
        show_lines=True,
    )
    table.add_column("shift")
    table.add_column("base", justify="right")
    for reward in rewards:
        table.add_column(reward + (" (control)" if reward == CONTROL else ""), justify="right")
    for reward in tested if CONTROL in rewards else []:
        table.add_column(f"{reward} real?", justify="center")
    for shift, cells in result["summary"].items():
        any_cell = next(iter(cells.values()))
        row = [shift, f"{any_cell['before_mean']:.1f}\nclean {any_cell['clean_before_mean']:.1f}"]
        row += [_pm(cells[r]) if r in cells else "-" for r in rewards]
        for reward in tested if CONTROL in rewards else []:
            verdict = result["gains"].get(shift, {}).get(reward)
            if verdict is None or not verdict["seeds"]:
                row.append("-")
            else:
                mark = "[green]yes[/green]" if verdict["real"] else "no"
                row.append(
                    f"{mark}\n{verdict['vs_control_points']:+.1f} vs ctrl\n"
                    f"noise {verdict['noise_points']:.1f}\nn={len(verdict['seeds'])} paired"
                )
        table.add_row(*row)
    return table


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


def _shared_config(overrides: dict[str, Any]) -> dict[str, Any]:
    """The settings every reward of a sweep shares: `AdaptConfig.as_dict()` without the reward."""
    config = make_config(CONTROL, **overrides).as_dict()
    round_cfg = dict(config["round"])
    round_cfg.pop("reward")
    return {**config, "round": round_cfg}


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
    config = _shared_config(overrides)
    runs = _load_previous(json_out, config, console) if resume or report_only else []
    done = {_run_key(r) for r in runs if r["severity"] == severity}
    started_at = datetime.now(UTC)
    evaluator = Evaluator()
    result: dict[str, Any] = {}

    def finish() -> dict[str, Any]:
        wanted = [
            r
            for r in runs
            if r["severity"] == severity
            and r["shift"] in shifts
            and r["seed"] in seeds
            and r["reward"] in rewards
        ]
        summary: dict[str, dict[str, Any]] = {}
        gains: dict[str, dict[str, Any]] = {}
        for shift in shifts:
            cells = {}
            for reward in rewards:
                cell_runs = sorted(
                    (r for r in wanted if r["shift"] == shift and r["reward"] == reward),
                    key=lambda r: r["seed"],
                )
                if cell_runs:
                    cells[reward] = summarize(cell_runs)
            if not cells:
                continue
            summary[shift] = cells
            if CONTROL in cells:
                shift_runs = [r for r in wanted if r["shift"] == shift]
                gains[shift] = {
                    reward: gain_verdict(shift_runs, reward) for reward in cells if reward != CONTROL
                }
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
                "criteria": {
                    "real_gain": "mean - mean(random) > max(std, std(random)) and mean > std "
                    "(sample std over seeds, points)",
                    "collapse": f"after < before - {COLLAPSE_DROP_POINTS:g} points, or final agreement > "
                    f"{COLLAPSE_AGREEMENT} with one class on > {COLLAPSE_TOP_SHARE:.0%} of held-out answers",
                },
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
                flag = (
                    f" [red]collapsed: {'; '.join(one['collapse_reasons'])}[/red]"
                    if one["collapse_reasons"]
                    else ""
                )
                console.print(
                    f"{data_dir.name} {reward} seed {seed}: "
                    f"{100 * one['before']:.1f} -> {100 * one['after']:.1f} "
                    f"({one['delta_points']:+.1f}), clean {100 * one['clean_after']:.1f}, "
                    f"agreement {one['final_agreement']:.3f}, top answer {one['top_class']} "
                    f"{one['top_class_share']:.0%}, {one['wall_s']:.0f} s{flag}"
                )
                finish()
    if verify and not report_only:
        shift, seed, reward = shifts[0], seeds[0], rewards[0]
        data_dir = data_root / stream_name(shift, severity)
        reference = run_offline(
            model_dir,
            data_dir / "adapt.jsonl",
            data_dir / "eval.jsonl",
            make_config(reward, **overrides),
            seed,
        )
        ours = next(r for r in runs if _run_key(r) == (shift, reward, seed) and r["severity"] == severity)
        same = reference["before"] == ours["before"] and reference["after"] == ours["after"]
        result["verify"] = {
            "run_offline_before": reference["before"],
            "run_offline_after": reference["after"],
            "bench_before": ours["before"],
            "bench_after": ours["after"],
            "match": same,
        }
        console.print(
            f"verify against run_offline ({shift}, {reward}, seed {seed}): before {reference['before']:.4f} "
            f"vs {ours['before']:.4f}, after {reference['after']:.4f} vs {ours['after']:.4f}: "
            + ("[green]match[/green]" if same else "[red]MISMATCH[/red]")
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
    reward_list = _split(rewards)
    bad = [r for r in reward_list if r not in REWARD_KINDS]
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
