"""Teacher-forced log-probabilities of sampled completions under the training model (transformers + PEFT).

GRPO's importance ratio needs the log-probability of every sampled token under the policy being trained;
they are recomputed here rather than taken from vLLM, so engine and trainer numerics never mix. The parity
test checks that both agree anyway, which is what makes vLLM's samples valid on-policy rollouts.

Work comes as rows `(prompt, completion)`. Rows whose prompts have the same length run as one padded batch
(completions right-padded, each row with its own image), which for a fixed-format task is every row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from peft import PeftModel
from transformers import PreTrainedModel


@dataclass
class Prompt:
    """One model input: the chat prompt's token ids and its image's patches."""

    ids: torch.Tensor  # (L,)
    pixel_values: torch.Tensor  # (patches, features)
    image_grid_thw: torch.Tensor  # (1, 3)


Row = tuple[Prompt, Sequence[int]]


def batch_inputs(rows: Sequence[Row], image_token_id: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Forward kwargs for rows of one prompt length: prompt + completion, right-padded."""
    length = rows[0][0].ids.shape[0]
    width = max(1, max(len(c) for _, c in rows))
    device = rows[0][0].ids.device
    ids = torch.full((len(rows), length + width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    types = torch.zeros_like(ids)
    for i, (prompt, completion) in enumerate(rows):
        ids[i, :length] = prompt.ids
        ids[i, length : length + len(completion)] = torch.as_tensor(list(completion), dtype=torch.long)
        mask[i, : length + len(completion)] = 1
        # Only the prompt's image placeholders are image tokens, whatever a completion sampled.
        types[i, :length] = (prompt.ids == image_token_id).long()
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "mm_token_type_ids": types,
        "pixel_values": torch.cat([p.pixel_values for p, _ in rows]),
        "image_grid_thw": torch.cat([p.image_grid_thw for p, _ in rows]),
    }


def buckets(rows: Sequence[Row], max_rows: int) -> list[list[int]]:
    """Indices of `rows` grouped by prompt length, in chunks of at most `max_rows`."""
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, (prompt, _) in enumerate(rows):
        by_length[prompt.ids.shape[0]].append(i)
    return [idx[lo : lo + max_rows] for idx in by_length.values() for lo in range(0, len(idx), max_rows)]


def unique_rows(rows: Sequence[Row]) -> tuple[list[Row], list[int]]:
    """The distinct rows, and for each row the index of its distinct twin.

    Samples of one prompt repeat a lot (a confident model answers "7" twenty times out of 32): each distinct
    (prompt, completion) is run once and shared, which changes no number and saves most of the compute.
    """
    index: dict[tuple[int, tuple[int, ...]], int] = {}
    distinct: list[Row] = []
    where = []
    for prompt, completion in rows:
        key = (id(prompt), tuple(completion))
        if key not in index:
            index[key] = len(distinct)
            distinct.append((prompt, completion))
        where.append(index[key])
    return distinct, where


def row_logprobs(
    model: PreTrainedModel | PeftModel,
    rows: Sequence[Row],
    image_token_id: int,
    pad_id: int,
    max_rows: int = 256,
) -> list[torch.Tensor]:
    """Log-prob of each completion token, one (T_i,) tensor per row (gradients flow in train mode)."""
    distinct, where = unique_rows(rows)
    scored = _row_logprobs(model, distinct, image_token_id, pad_id, max_rows)
    return [scored[i] for i in where]


def _row_logprobs(
    model: PreTrainedModel | PeftModel, rows: Sequence[Row], image_token_id: int, pad_id: int, max_rows: int
) -> list[torch.Tensor]:
    out: list[torch.Tensor] = [torch.empty(0)] * len(rows)
    for idx in buckets(rows, max_rows):
        part = [rows[i] for i in idx]
        inputs = batch_inputs(part, image_token_id, pad_id)
        length = part[0][0].ids.shape[0]
        width = inputs["input_ids"].shape[1] - length
        logits = model(**inputs).logits
        # Position t predicts token t + 1: completion tokens are predicted from length - 1 onwards.
        logp = F.log_softmax(logits[:, length - 1 : length - 1 + width].float(), dim=-1)
        picked = logp.gather(-1, inputs["input_ids"][:, length:, None]).squeeze(-1)
        for j, i in enumerate(idx):
            out[i] = picked[j, : len(rows[i][1])]
    return out


def completion_logprobs(
    model: PreTrainedModel,
    prompt_ids: torch.Tensor,
    pixel_values: torch.Tensor,
    image_grid_thw: torch.Tensor,
    completions: list[list[int]],
    image_token_id: int,
    pad_id: int,
) -> list[torch.Tensor]:
    """Log-probs of several completions of one prompt (L,) with one image."""
    prompt = Prompt(prompt_ids, pixel_values, image_grid_thw)
    return row_logprobs(model, [(prompt, c) for c in completions], image_token_id, pad_id)
