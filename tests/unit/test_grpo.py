"""GRPO's pieces: advantages, k3 KL, and the PPO-clip loss's gradients, clipping and token-mean."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adapter.grpo import group_advantages, is_informative, k3_kl, ppo_clip_loss


def test_unanimous_groups_have_exactly_zero_advantage() -> None:
    for value in (0.0, 1.0, 0.1, -0.6887, 1 / 3):
        rewards = torch.full((16,), value)
        assert torch.equal(group_advantages(rewards), torch.zeros(16))
        assert not is_informative(rewards)
    assert torch.equal(group_advantages(torch.tensor([0.7])), torch.zeros(1))
    assert is_informative(torch.tensor([1.0, 1.0, 0.0]))


def test_advantages_are_normalised_per_group_with_the_unbiased_std() -> None:
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.2, 0.2, 0.2, 0.2], [3.0, 1.0, 2.0, 2.0]])
    adv = group_advantages(rewards, eps=0.0)
    assert torch.allclose(adv[0], torch.tensor([1.5, -0.5, -0.5, -0.5]))  # mean 1/4, unbiased std 1/2
    assert torch.equal(adv[1], torch.zeros(4))
    assert torch.allclose(adv[2].mean(), torch.tensor(0.0), atol=1e-7)
    assert torch.allclose(adv[2].std(unbiased=True), torch.tensor(1.0))
    # A group's advantages do not depend on the other groups in the batch.
    assert torch.equal(group_advantages(rewards)[0], group_advantages(rewards[0]))


def test_k3_is_zero_at_the_reference_and_positive_elsewhere() -> None:
    logp = torch.log_softmax(torch.randn(3, 5, generator=torch.Generator().manual_seed(0)), dim=-1)
    assert torch.equal(k3_kl(logp, logp.clone()), torch.zeros_like(logp))
    other = logp + torch.tensor([0.3, -0.3, 1e-3, -2.0, 5.0])
    assert bool((k3_kl(logp, other) > 0).all())
    # exp(d) - d - 1 by hand, d = ref - logp = 1.
    assert k3_kl(torch.tensor([-2.0]), torch.tensor([-1.0])).item() == pytest.approx(torch.e - 2.0)


def test_k3_is_clamped_and_its_gradient_stays_finite() -> None:
    logp = torch.tensor([-1.0, -1.0], requires_grad=True)
    kl = k3_kl(logp, torch.tensor([200.0, -500.0]))
    assert kl.tolist() == [10.0, 10.0]
    kl.sum().backward()
    assert logp.grad is not None
    assert bool(torch.isfinite(logp.grad).all())


def _policy_logp(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-prob (B, T) of `tokens` under a position-wise categorical policy with logits (T, V)."""
    logp = F.log_softmax(logits, dim=-1)  # (T, V)
    return logp.gather(-1, tokens.T).T


def test_one_sgd_step_raises_rewarded_samples_and_lowers_the_others() -> None:
    torch.manual_seed(0)
    logits = torch.nn.Parameter(torch.randn(2, 6))
    ref = logits.detach().clone()  # the frozen initial policy
    tokens = torch.tensor([[0, 1], [0, 2], [3, 4], [5, 4]])  # 4 sampled completions of 2 tokens
    advantages = group_advantages(torch.tensor([1.0, 1.0, 0.0, 0.0]))
    mask = torch.ones(4, 2)
    before = _policy_logp(logits, tokens).detach()
    kl = k3_kl(_policy_logp(logits, tokens), _policy_logp(ref, tokens))
    loss, stats = ppo_clip_loss(_policy_logp(logits, tokens), before, advantages, mask, kl=kl)
    assert stats["kl_mean"] == 0.0  # at initialisation the policy is the reference
    assert stats["ratio_mean"] == pytest.approx(1.0)
    assert stats["clip_fraction"] == 0.0
    loss.backward()
    assert logits.grad is not None
    with torch.no_grad():
        logits.sub_(0.5 * logits.grad)
    after = _policy_logp(logits, tokens).detach()
    change = (after - before).sum(dim=1)  # sequence log-prob change
    assert bool((change[:2] > 0).all()), change
    assert bool((change[2:] < 0).all()), change
    # After the step the policy has left the reference: KL is positive.
    assert k3_kl(_policy_logp(logits, tokens), _policy_logp(ref, tokens)).mean().item() > 0


def _loss_and_grad(ratio: float, advantage: float, **kwargs: float | None) -> tuple[float, float]:
    logp = torch.tensor([[0.0]], requires_grad=True)
    old = torch.tensor([[-float(torch.log(torch.tensor(ratio)))]])
    loss, _ = ppo_clip_loss(logp, old, torch.tensor([advantage]), torch.ones(1, 1), **kwargs)  # type: ignore[arg-type]
    loss.backward()
    assert logp.grad is not None
    return loss.item(), logp.grad.item()


def test_clipping_stops_the_gradient_beyond_the_trust_region() -> None:
    # A > 0: pushed up to 1 + 0.2, no further.
    assert _loss_and_grad(1.1, 1.0)[1] == pytest.approx(-1.1)
    assert _loss_and_grad(1.3, 1.0) == pytest.approx((-1.2, 0.0))
    # A > 0 below the region: still pulled up (the clip is one-sided).
    assert _loss_and_grad(0.5, 1.0)[1] == pytest.approx(-0.5)
    # A < 0: pushed down to 1 - 0.2, no further.
    assert _loss_and_grad(0.9, -1.0)[1] == pytest.approx(0.9)
    assert _loss_and_grad(0.7, -1.0) == pytest.approx((0.8, 0.0))
    # Asymmetric bounds are honoured.
    assert _loss_and_grad(1.25, 1.0, clip_high=0.28)[1] == pytest.approx(-1.25)
    assert _loss_and_grad(1.3, 1.0, clip_high=0.28) == pytest.approx((-1.28, 0.0))


def test_dual_clip_bounds_the_loss_of_negative_advantages() -> None:
    assert _loss_and_grad(2.0, -1.5)[1] == pytest.approx(3.0)  # under 3 * |A|: the plain PPO loss
    assert _loss_and_grad(10.0, -1.5) == pytest.approx((4.5, 0.0))  # capped at 3 * |A|
    assert _loss_and_grad(10.0, -1.5, dual_clip=None)[0] == pytest.approx(15.0)
    assert _loss_and_grad(10.0, 1.5)[0] == pytest.approx(-1.2 * 1.5)  # positive A: the ordinary clip
    with pytest.raises(ValueError, match="dual_clip must be > 1"):
        _loss_and_grad(1.0, 1.0, dual_clip=0.5)


def test_clip_stats_count_masked_tokens() -> None:
    logp = torch.zeros(2, 3)
    old = torch.log(torch.tensor([[1 / 1.5, 1.0, 1.0], [1 / 10, 1.0, 1 / 1.5]]))  # ratios 1.5,1,1 / 10,1,1.5
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    _, stats = ppo_clip_loss(logp, old, torch.tensor([1.0, -1.0]), mask)
    assert stats["clip_fraction"] == pytest.approx(1 / 5)
    assert stats["dual_clip_fraction"] == pytest.approx(1 / 5)
    assert stats["ratio_mean"] == pytest.approx((1.5 + 1 + 1 + 10 + 1) / 5)


def test_token_mean_ignores_masked_tokens() -> None:
    logp = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, -1.0, -1.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    advantages = torch.tensor([1.0, -2.0])
    loss, stats = ppo_clip_loss(logp, logp.detach(), advantages, mask)
    # Ratio 1: per-token loss -A. Four real tokens: (-1 - 1 - 1 + 2) / 4, not averaged per response.
    assert loss.item() == pytest.approx(-0.25)
    assert stats["policy_loss"] == pytest.approx(-0.25)
    loss.backward()
    assert logp.grad is not None
    assert logp.grad[1, 1:].tolist() == [0.0, 0.0]
    assert logp.grad[0].tolist() == pytest.approx([-0.25] * 3)
    # Garbage under the mask changes nothing, even an inf.
    padded = logp.detach().clone()
    padded[1, 1:] = -80.0
    assert ppo_clip_loss(padded, logp.detach(), advantages, mask)[0].item() == pytest.approx(-0.25)
    kl = torch.tensor([[0.0, 0.0, 0.0], [0.0, float("inf"), float("inf")]])
    assert ppo_clip_loss(logp, logp.detach(), advantages, mask, kl=kl)[0].item() == pytest.approx(-0.25)
    # An all-masked batch gives 0, not NaN.
    assert ppo_clip_loss(logp, logp.detach(), advantages, torch.zeros(2, 3))[0].item() == 0.0


def test_kl_enters_as_its_coefficient_times_its_token_mean() -> None:
    logp = torch.full((2, 2), -1.0)
    kl = torch.tensor([[0.4, 0.2], [0.6, 100.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    advantages = torch.tensor([1.0, -1.0])
    plain, _ = ppo_clip_loss(logp, logp, advantages, mask)
    with_kl, stats = ppo_clip_loss(logp, logp, advantages, mask, kl=kl, kl_coef=0.5)
    assert stats["kl_mean"] == pytest.approx(0.4)  # (0.4 + 0.2 + 0.6) / 3, the masked 100 ignored
    assert with_kl.item() == pytest.approx(plain.item() + 0.5 * 0.4)


def test_advantages_must_be_one_per_response() -> None:
    with pytest.raises(ValueError, match="one value per response"):
        ppo_clip_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 3))
