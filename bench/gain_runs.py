"""The adaptation-gain benchmark's runs: a fresh LoRA adapted on a shift's unlabeled rows and scored
greedily before and after, and the `AdaptConfig` each run gets.

`run_one` mirrors `adapter.offline.run_offline` step for step and adds what `run_offline` does not measure:
accuracy on a second file (clean) and the distribution of the adapted model's greedy answers, to detect a
collapse onto one class. `verify_offline` runs `run_offline` itself to check that both agree.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch

from adapter.logprobs import Prompt
from adapter.offline import AdaptConfig, adapt, prompts_for, read_rows, run_offline
from adapter.policy import Policy
from adapter.rewards import RewardKind
from bench.gain_stats import CONTROL
from core.answers import extract_answer, is_correct
from core.rows import Row

COLLAPSE_DROP_POINTS = 10.0  # held-out accuracy below before - 10 points
COLLAPSE_AGREEMENT = 0.98  # last round's mean majority share above this ...
COLLAPSE_TOP_SHARE = 0.5  # ... while one class takes more than half of the held-out greedy answers
COLLAPSE_RULE = (
    f"after < before - {COLLAPSE_DROP_POINTS:g} points, or final agreement > "
    f"{COLLAPSE_AGREEMENT} with one class on > {COLLAPSE_TOP_SHARE:.0%} of held-out answers"
)
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
        r.answer is not None and is_correct(a, r.answer) for a, r in zip(answers, rows, strict=True)
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


def shared_config(overrides: dict[str, Any]) -> dict[str, Any]:
    """The settings every reward of a sweep shares: `AdaptConfig.as_dict()` without the reward."""
    config = make_config(CONTROL, **overrides).as_dict()
    round_cfg = dict(cast(dict[str, Any], config["round"]))
    round_cfg.pop("reward")
    return {**config, "round": round_cfg}


def verify_offline(
    model_dir: Path, data_dir: Path, cfg: AdaptConfig, seed: int, ours: dict[str, Any]
) -> dict[str, Any]:
    """Run `run_offline` itself on one cell and compare its before/after accuracy with `ours`, the same
    cell's run by `run_one`."""
    reference = run_offline(model_dir, data_dir / "adapt.jsonl", data_dir / "eval.jsonl", cfg, seed)
    return {
        "run_offline_before": reference["before"],
        "run_offline_after": reference["after"],
        "bench_before": ours["before"],
        "bench_after": ours["after"],
        "match": reference["before"] == ours["before"] and reference["after"] == ours["after"],
    }
