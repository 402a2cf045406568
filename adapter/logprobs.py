"""Teacher-forced log-probabilities of sampled completions under the training model (transformers + PEFT).

GRPO's importance ratio needs the log-probability of every sampled token under the policy being trained;
they are recomputed here rather than taken from vLLM, so engine and trainer numerics never mix. The parity
test checks that both agree anyway, which is what makes vLLM's samples valid on-policy rollouts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel


def completion_logprobs(
    model: PreTrainedModel,
    prompt_ids: torch.Tensor,
    pixel_values: torch.Tensor,
    image_grid_thw: torch.Tensor,
    completions: list[list[int]],
    image_token_id: int,
    pad_id: int,
) -> list[torch.Tensor]:
    """Log-prob of each token of each completion, given one prompt (L,) with one image.

    Completions are right-padded to one length and run as one batch; the prompt's image is repeated for
    every row. Returns one (T_i,) tensor per completion (gradients flow if the model is in train mode).
    """
    n = len(completions)
    longest = max(len(c) for c in completions)
    padded = torch.full((n, longest), pad_id, dtype=torch.long)
    mask = torch.zeros((n, longest), dtype=torch.long)
    for i, c in enumerate(completions):
        padded[i, : len(c)] = torch.tensor(c, dtype=torch.long)
        mask[i, : len(c)] = 1
    length = prompt_ids.shape[0]
    ids = torch.cat([prompt_ids.expand(n, -1), padded], dim=1)
    attention = torch.cat([torch.ones((n, length), dtype=torch.long), mask], dim=1)
    # Only the prompt's image placeholders are image tokens, whatever the completion sampled.
    mm_types = torch.zeros_like(ids)
    mm_types[:, :length] = (prompt_ids == image_token_id).long()
    logits = model(
        input_ids=ids,
        attention_mask=attention,
        mm_token_type_ids=mm_types,
        pixel_values=pixel_values.repeat(n, 1),
        image_grid_thw=image_grid_thw.repeat(n, 1),
    ).logits
    # Position t predicts token t + 1: the completion's tokens are predicted from length - 1 onwards.
    logp = F.log_softmax(logits[:, length - 1 : length - 1 + longest].float(), dim=-1)
    picked = logp.gather(-1, padded[..., None]).squeeze(-1)
    return [picked[i, : len(c)] for i, c in enumerate(completions)]
