"""Supervised pretraining of the built-in model on clean digits, with label smoothing over the answers.

Plain cross-entropy makes a tiny model so confident that 32 samples at temperature 1 almost always agree,
and test-time RL, which learns from disagreement, then has nothing to work with. Spreading 20% of the
target mass over the ten digit tokens (and nothing else) keeps clean greedy accuracy high while leaving
room for samples to disagree on shifted images (measured in shared/notes/adaptation-experiments.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from transformers import Qwen2VLForConditionalGeneration

from adapter.tinymodel.batches import PixelBatch, TaskInputs


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 20
    weight_decay: float = 0.01
    label_smoothing: float = 0.2  # spread over the ten answer tokens only

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def answer_targets(labels: torch.Tensor, n_answers: int, smoothing: float) -> torch.Tensor:
    """Soft targets over the answer tokens: 1 - s on the label plus s / n on every answer.

    >>> answer_targets(torch.tensor([1]), 4, 0.2).tolist()
    [[0.05000000074505806, 0.8500000238418579, 0.05000000074505806, 0.05000000074505806]]
    """
    target = torch.full((len(labels), n_answers), smoothing / n_answers)
    target[torch.arange(len(labels)), labels] += 1.0 - smoothing
    return target


def task_loss(
    model: Qwen2VLForConditionalGeneration,
    task: TaskInputs,
    pixels: PixelBatch,
    labels: torch.Tensor,
    smoothing: float,
) -> torch.Tensor:
    """Smoothed cross-entropy on the answer token plus plain cross-entropy on the end-of-turn after it."""
    completion = task.answer_ids[labels][:, None]
    logits = model(**task.model_inputs(pixels, completion)).logits
    last = task.prompt_ids.shape[0] - 1
    logp_answer = F.log_softmax(logits[:, last].float(), dim=-1)[:, task.answer_ids]
    answer_loss = -(answer_targets(labels, len(task.answer_ids), smoothing) * logp_answer).sum(-1).mean()
    eos_target = torch.full((len(labels),), task.eos_id)
    eos_loss = F.cross_entropy(logits[:, last + 1].float(), eos_target)
    return answer_loss + eos_loss


def _lr_factor(step: int, cfg: PretrainConfig) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def pretrain(
    model: Qwen2VLForConditionalGeneration,
    task: TaskInputs,
    pixels: PixelBatch,
    labels: torch.Tensor,
    cfg: PretrainConfig,
    seed: int,
    on_step: Callable[[int, float], None] = lambda step, loss: None,
) -> list[float]:
    """Train all weights in place for `cfg.steps` AdamW steps; returns the loss of every step."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, cfg))
    model.train()
    losses = []
    for step in range(cfg.steps):
        idx = torch.randint(len(labels), (cfg.batch_size,), generator=gen)
        loss = task_loss(model, task, pixels.select(idx), labels[idx], cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward untyped
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        on_step(step, losses[-1])
    model.eval()  # type: ignore[no-untyped-call]
    return losses
