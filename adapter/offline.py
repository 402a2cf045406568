"""`ttrv adapt`: the paper's protocol with the worker's code. Adapt on unlabeled rows, then score greedily.

The same `build_groups` / `train_round` as the online worker, on TTRV rows (`{"id", "prompt", "image_path",
"answer"}`; `answer` is read only by the evaluation). Rollouts are sampled in-process from the training
model, which is the served model's exact twin (the parity test holds them within 1e-4), so a run needs no
server and many seeds fit in a benchmark.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from adapter.logprobs import Prompt
from adapter.lora import LoraSpec
from adapter.policy import Policy, load_image
from adapter.round import Rollout, RoundConfig, RoundStats, build_groups, train_round
from core.answers import is_correct
from core.rows import Row
from core.rows import read_rows as iter_rows


def read_rows(path: Path) -> list[Row]:
    """TTRV rows from a JSONL file (image paths resolved against the file's folder), as a list."""
    return list(iter_rows(path))


@dataclass(frozen=True)
class AdaptConfig:
    """How much unlabeled data a run sees and how it is cut into rounds."""

    records_per_round: int = 32
    passes: int = 2  # over the adaptation rows (the paper trains about 2 epochs)
    samples: int = 32  # completions per record for the vote (the paper's N)
    temperature: float = 1.0
    max_new_tokens: int = 4
    lora: LoraSpec = field(default_factory=LoraSpec)
    round: RoundConfig = field(default_factory=RoundConfig)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def prompts_for(policy: Policy, rows: Sequence[Row]) -> list[Prompt]:
    return [policy.prompt(load_image(r.image_path.read_bytes()), r.prompt) for r in rows]


def greedy_accuracy(
    policy: Policy, prompts: Sequence[Prompt], rows: Sequence[Row], max_new_tokens: int
) -> float:
    """Share of rows whose greedy answer equals the label (after the same answer extraction as serving)."""
    correct = 0
    for lo in range(0, len(prompts), 256):
        samples = policy.sample(prompts[lo : lo + 256], 1, 0.0, max_new_tokens)
        for (completion,), row in zip(samples, rows[lo : lo + 256], strict=True):
            correct += row.answer is not None and is_correct(policy.decode(completion), row.answer)
    return correct / max(1, len(rows))


def adapt(
    policy: Policy,
    prompts: Sequence[Prompt],
    cfg: AdaptConfig,
    seed: int,
    on_round: Callable[[int, RoundStats], None] = lambda i, s: None,
) -> list[RoundStats]:
    """Adapt `policy` in place on unlabeled `prompts`: rounds of sample -> score -> update."""
    rng = random.Random(seed)
    generator = torch.Generator(device=policy.device).manual_seed(seed)
    history = []
    for _ in range(cfg.passes):
        order = list(range(len(prompts)))
        rng.shuffle(order)
        for lo in range(0, len(order), cfg.records_per_round):
            chosen = [prompts[i] for i in order[lo : lo + cfg.records_per_round]]
            sampled = policy.sample(chosen, cfg.samples, cfg.temperature, cfg.max_new_tokens, generator)
            rollouts = [
                Rollout(p, completions, [policy.decode(c) for c in completions])
                for p, completions in zip(chosen, sampled, strict=True)
            ]
            groups, stats = build_groups(rollouts, cfg.round, rng)
            history.append(train_round(policy, groups, cfg.round, stats, rng))
            on_round(len(history), history[-1])
    return history


def run_offline(
    model_dir: Path,
    data: Path,
    eval_rows: Path,
    cfg: AdaptConfig,
    seed: int,
    out: Path | None = None,
    on_round: Callable[[int, RoundStats], None] = lambda i, s: None,
) -> dict[str, object]:
    """Before/after greedy accuracy on `eval_rows` around adaptation on `data` (labels unused)."""
    torch.manual_seed(seed)
    policy = Policy(model_dir, cfg.lora, seed=seed)
    train_rows, test_rows = read_rows(data), read_rows(eval_rows)
    train_prompts, test_prompts = prompts_for(policy, train_rows), prompts_for(policy, test_rows)
    before = greedy_accuracy(policy, test_prompts, test_rows, cfg.max_new_tokens)
    history = adapt(policy, train_prompts, cfg, seed, on_round)
    after = greedy_accuracy(policy, test_prompts, test_rows, cfg.max_new_tokens)
    if out is not None:
        policy.save(out)
    return {
        "before": before,
        "after": after,
        "rounds": len(history),
        "steps": sum(s.steps for s in history),
        "final_agreement": history[-1].agreement_mean if history else float("nan"),
        "history": [s.as_dict() for s in history],
    }
