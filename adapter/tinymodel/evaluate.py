"""Accuracy of the built-in model, read off its exact answer distribution.

Every answer is one token followed by end-of-turn, so one forward pass gives the whole distribution of
answers that sampling at temperature 1 would draw from. Greedy accuracy is its argmax, mean per-sample
accuracy is the probability of the right answer, and majority@k votes over k draws from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Qwen2VLForConditionalGeneration

from adapter.tinymodel.batches import PixelBatch, TaskInputs


@dataclass(frozen=True)
class Accuracy:
    greedy: float
    per_sample: float
    majority_at_32: float


@torch.no_grad()
def answer_distribution(
    model: Qwen2VLForConditionalGeneration, task: TaskInputs, pixels: PixelBatch, batch_size: int = 128
) -> torch.Tensor:
    """Probabilities over the whole vocabulary of the first answer token, one row per image."""
    n = pixels.image_grid_thw.shape[0]
    rows = []
    for lo in range(0, n, batch_size):
        part = pixels.select(torch.arange(lo, min(n, lo + batch_size)))
        logits = model(**task.model_inputs(part)).logits[:, -1].float()
        rows.append(F.softmax(logits, dim=-1))
    return torch.cat(rows)


def majority_vote(samples: np.ndarray) -> np.ndarray:
    """Most frequent token of each row; ties go to the smaller token id.

    >>> majority_vote(np.array([[3, 5, 5], [2, 4, 4], [1, 2, 3]])).tolist()
    [5, 4, 1]
    """
    return np.array([np.bincount(row).argmax() for row in samples])


def accuracy(
    probs: torch.Tensor, task: TaskInputs, labels: torch.Tensor, seed: int, votes: int = 32
) -> Accuracy:
    correct = task.answer_ids[labels]
    greedy = (probs.argmax(-1) == correct).float().mean()
    per_sample = probs[torch.arange(len(labels)), correct].mean()
    rng = np.random.default_rng(seed)
    p = probs.double().numpy()
    p /= p.sum(-1, keepdims=True)
    samples = np.stack([rng.choice(p.shape[1], size=votes, p=row) for row in p])
    majority = (majority_vote(samples) == correct.numpy()).mean()
    return Accuracy(float(greedy), float(per_sample), float(majority))
