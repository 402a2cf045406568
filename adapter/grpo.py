"""GRPO's pieces as the released TTRV/verl run uses them: group advantages, k3 KL, the PPO-clip loss.

Steps 6-7 of shared/notes/ttrv-algorithm.md: advantages normalised within each prompt's group (unbiased std,
eps 1e-6), a PPO-clip policy loss with clip 0.2 and dual-clip 3.0 aggregated as a token mean, and a KL penalty
to the frozen initial model (coefficient 0.001, the low-variance k3 estimator clamped to +-10).
"""

from __future__ import annotations

import torch
from torch import Tensor

# A log-ratio beyond +-20 only happens with a broken old/ref log-prob; clamping it keeps exp() finite so the
# backward pass cannot turn an overflow into NaN gradients (the clipped terms then have zero gradient anyway).
_MAX_LOG_RATIO = 20.0


def is_informative(rewards: Tensor) -> bool:
    """Whether a group's rewards differ at all. A unanimous group has zero advantage for every sample and
    contributes nothing but compute (and KL) to the step, so the worker skips it (ttrv-algorithm.md, guards).

    >>> is_informative(torch.tensor([1.0, 1.0, 1.0])), is_informative(torch.tensor([1.0, 0.5]))
    (False, True)
    >>> is_informative(torch.tensor([0.3]))  # one sample: nothing to compare against
    False
    """
    return rewards.numel() > 1 and not bool(torch.all(rewards == rewards.flatten()[0]))


def group_advantages(rewards: Tensor, eps: float = 1e-6) -> Tensor:
    """A_j = (r_j - mean) / (std + eps) over the last dimension, std unbiased as in verl's GRPO.

    `rewards` is one group (G,) or a batch of groups (N, G). Rows whose rewards are all equal (and groups of
    one) get exactly 0, not round-off: (r - mean) of equal floats is not always 0.0, and eps would then blow
    a 1e-17 up to 1e-11 of spurious signal.

    >>> group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]))  # mean 0.25, unbiased std 0.5
    tensor([ 1.5000, -0.5000, -0.5000, -0.5000])
    >>> group_advantages(torch.tensor([[0.1, 0.1, 0.1], [2.0, 0.0, 1.0]]))
    tensor([[ 0.0000,  0.0000,  0.0000],
            [ 1.0000, -1.0000,  0.0000]])
    """
    if not rewards.is_floating_point():
        rewards = rewards.float()
    if rewards.shape[-1] < 2:
        return torch.zeros_like(rewards)
    unanimous = (rewards == rewards[..., :1]).all(dim=-1, keepdim=True)
    centred = rewards - rewards.mean(dim=-1, keepdim=True)
    scaled = centred / (rewards.std(dim=-1, keepdim=True, unbiased=True) + eps)
    return torch.where(unanimous, torch.zeros_like(scaled), scaled)


def k3_kl(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token k3 estimate of KL(policy || reference): exp(d) - d - 1 with d = ref_logp - logp.

    verl's `low_var_kl`: non-negative, unbiased for samples drawn from the policy and of lower variance than
    log(pi/ref); clamped to [-10, 10] so one token whose probability fell off a cliff cannot dominate.
    Exactly 0 where the policy equals the reference (the first step from the base model).

    >>> k3_kl(torch.tensor([-1.0, -1.0, -1.0]), torch.tensor([-1.0, -2.0, -50.0]))
    tensor([ 0.0000,  0.3679, 10.0000])
    """
    d = (ref_logp - logp).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    # expm1(d) - d is exp(d) - d - 1 without the cancellation that makes tiny d come out slightly negative.
    return (torch.expm1(d) - d).clamp(-10.0, 10.0)


def _token_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Sum over masked tokens / number of masked tokens in the whole batch (verl's "token-mean"), so every
    token weighs the same whatever its response's length. An all-masked batch gives 0, not NaN, and padding
    is selected away rather than multiplied by 0, so an inf there cannot turn the loss into NaN."""
    return torch.where(mask > 0, values, torch.zeros_like(values)).sum() / mask.sum().clamp(min=1.0)


def ppo_clip_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = 3.0,
    kl: Tensor | None = None,
    kl_coef: float = 0.001,
) -> tuple[Tensor, dict[str, float]]:
    """PPO-clip policy loss with dual clip and token-mean aggregation, plus kl_coef * token-mean(kl).

    Shapes: `logp`, `old_logp`, `mask` and `kl` (B, T) over completion tokens, `advantages` (B,) broadcast
    over each response's tokens. Per token, with ratio = exp(logp - old_logp):

    * loss = -min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A): no gradient once a token has moved
      past the trust region in the direction its advantage asks for;
    * for A < 0 the loss is also capped at dual_clip * |A| (verl's dual clip): a token whose ratio exploded
      while its advantage is negative would otherwise give an unbounded loss;
    * `old_logp` and `advantages` are constants (detached). `old_logp` should come from the training model at
      rollout time, not from vLLM (notes, "Reading this for an online server"). With one epoch and one
      mini-batch per rollout ratio == 1 and the clip never acts; it matters over several mini-batches.

    `kl` is the per-token `k3_kl` to the reference model, or None for no KL term. Stats (floats, over masked
    tokens): `clip_fraction` (clipped to the trust region), `dual_clip_fraction`, `ratio_mean`, `kl_mean`
    (0.0 without kl), `policy_loss`, `loss`.

    >>> logp = torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.9]]))
    >>> loss, stats = ppo_clip_loss(logp, logp, torch.tensor([1.0, -1.0]), torch.tensor([[1, 1], [1, 0]]))
    >>> round(loss.item(), 4), stats["ratio_mean"], stats["clip_fraction"]  # (-1 - 1 + 1) / 3 masked tokens
    (-0.3333, 1.0, 0.0)
    """
    if advantages.dim() != 1 or advantages.shape[0] != logp.shape[0]:
        raise ValueError(
            f"advantages must be one value per response, shape ({logp.shape[0]},), "
            f"got {tuple(advantages.shape)}: pass the (B,) group advantages, not per-token values"
        )
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1 (verl uses 3.0) or None to disable it, got {dual_clip}")
    mask = mask.to(logp.dtype)
    adv = advantages.detach().to(logp.dtype)[:, None]
    ratio = torch.exp((logp - old_logp.detach()).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO))
    unclipped = -ratio * adv
    clipped = -ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * adv
    per_token = torch.maximum(unclipped, clipped)
    is_clipped = clipped > unclipped
    is_dual = torch.zeros_like(is_clipped)
    if dual_clip is not None:
        cap = -dual_clip * adv  # = dual_clip * |A| where A < 0
        is_dual = (adv < 0) & (per_token > cap)
        per_token = torch.where(is_dual, cap.expand_as(per_token), per_token)
    policy_loss = _token_mean(per_token, mask)
    kl_mean = _token_mean(kl, mask) if kl is not None else torch.zeros((), dtype=logp.dtype)
    loss = policy_loss + kl_coef * kl_mean
    stats = {
        "clip_fraction": _token_mean(is_clipped.to(mask.dtype), mask).item(),
        "dual_clip_fraction": _token_mean(is_dual.to(mask.dtype), mask).item(),
        "ratio_mean": _token_mean(ratio.detach(), mask).item(),
        "kl_mean": kl_mean.detach().item(),
        "policy_loss": policy_loss.detach().item(),
        "loss": loss.detach().item(),
    }
    return loss, stats
