"""One adaptation round: TTRV rewards on sampled answers, GRPO advantages, PPO-clip updates of the LoRA.

A round takes records that were already rolled out (N sampled completions each, from the round's starting
policy), scores every completion against its own group's votes (no labels), keeps K of them per record,
and runs `epochs` passes of mini-batch updates. Old log-probs come from the training model at the start of
the round (not from the engine), and the KL reference is the base model (adapter disabled).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from adapter.grpo import group_advantages, is_informative, k3_kl, ppo_clip_loss
from adapter.logprobs import Prompt
from adapter.policy import Policy
from adapter.rewards import compute_rewards, vote_stats
from core.answers import load_extractor


@dataclass(frozen=True)
class RoundConfig:
    """GRPO settings; the defaults are the ones measured in bench/adaptation_gain.py."""

    reward: str = "ttrv"  # a built-in (RewardKind) or package.module:function (adapter/rewards.py)
    extractor: str = "default"  # what counts as the same answer (core/plugins.py)
    alpha: float = 0.75  # weight of the normalised answer entropy in the TTRV reward
    keep: int = 16  # completions per record used in the loss (of the N sampled for the vote)
    lr: float = 3e-4
    weight_decay: float = 0.01
    epochs: int = 2  # passes over the round's records (the paper: about 2 epochs)
    records_per_step: int = 16  # records per mini-batch (their K completions each)
    clip: float = 0.2
    dual_clip: float = 3.0
    kl_coef: float = 0.001
    max_grad_norm: float = 1.0
    min_agreement: float = 0.0  # skip records whose majority share is below this (confidence filter)


@dataclass
class Rollout:
    """One record's sampled completions (token ids and text) and its prompt."""

    prompt: Prompt
    completions: list[list[int]]
    texts: list[str]
    options: list[str] | None = None


@dataclass
class Group:
    prompt: Prompt
    completions: list[list[int]]  # the K kept
    advantages: torch.Tensor  # (K,)
    old_logp: list[torch.Tensor] = field(default_factory=list)
    ref_logp: list[torch.Tensor] = field(default_factory=list)


@dataclass
class RoundStats:
    records: int = 0
    informative: int = 0
    reward_mean: float = 0.0
    agreement_mean: float = 0.0
    entropy_ratio_mean: float = 0.0
    parseable_share: float = 0.0
    steps: int = 0
    loss: float = 0.0
    kl: float = 0.0
    clip_fraction: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items()}


def build_groups(
    rollouts: Sequence[Rollout], cfg: RoundConfig, rng: random.Random
) -> tuple[list[Group], RoundStats]:
    """Score each record's completions against its own votes; keep K; drop groups with no signal."""
    stats = RoundStats(records=len(rollouts))
    extract = load_extractor(cfg.extractor)
    groups: list[Group] = []
    rewards_seen: list[float] = []
    agreements, entropies, parseable = [], [], []
    for r in rollouts:
        answers = [extract(t, r.options) for t in r.texts]
        votes = vote_stats(answers)
        agreements.append(votes.agreement)
        entropies.append(votes.entropy_ratio)
        parseable.append(votes.parseable_share)
        rewards = compute_rewards(cfg.reward, answers, alpha=cfg.alpha, rng=rng)
        rewards_seen.extend(rewards)
        if votes.agreement < cfg.min_agreement:
            continue
        kept = rng.sample(range(len(answers)), min(cfg.keep, len(answers)))
        kept_rewards = torch.tensor([rewards[i] for i in kept])
        if not is_informative(kept_rewards):
            continue  # unanimous: zero advantage for every sample
        groups.append(Group(r.prompt, [r.completions[i] for i in kept], group_advantages(kept_rewards)))
    stats.informative = len(groups)
    stats.reward_mean = sum(rewards_seen) / max(1, len(rewards_seen))
    stats.agreement_mean = sum(agreements) / max(1, len(agreements))
    stats.entropy_ratio_mean = sum(entropies) / max(1, len(entropies))
    stats.parseable_share = sum(parseable) / max(1, len(parseable))
    return groups, stats


def _padded(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    values = torch.zeros(len(rows), width, device=rows[0].device)
    mask = torch.zeros(len(rows), width, device=rows[0].device)
    for i, r in enumerate(rows):
        values[i, : len(r)] = r
        mask[i, : len(r)] = 1.0
    return values, mask


def train_round(
    policy: Policy, groups: list[Group], cfg: RoundConfig, stats: RoundStats, rng: random.Random
) -> RoundStats:
    """Update the policy's LoRA in place on `groups`; returns `stats` with the update's numbers filled in."""
    if not groups:
        return stats
    rows = [(g.prompt, c) for g in groups for c in g.completions]
    with torch.no_grad():
        old_all, ref_all = policy.logprobs(rows), policy.logprobs(rows, reference=True)
    at = 0
    for g in groups:
        g.old_logp, g.ref_logp = old_all[at : at + len(g.completions)], ref_all[at : at + len(g.completions)]
        at += len(g.completions)
    params = [p for p in policy.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses, kls, clips = [], [], []
    for _ in range(cfg.epochs):
        order = list(range(len(groups)))
        rng.shuffle(order)
        for lo in range(0, len(order), cfg.records_per_step):
            batch = [groups[i] for i in order[lo : lo + cfg.records_per_step]]
            new = policy.logprobs([(g.prompt, c) for g in batch for c in g.completions])
            logp, mask = _padded(new)
            old, _ = _padded([lp for g in batch for lp in g.old_logp])
            ref, _ = _padded([lp for g in batch for lp in g.ref_logp])
            advantages = torch.cat([g.advantages for g in batch]).to(logp.device)
            loss, info = ppo_clip_loss(
                logp, old, advantages, mask,
                clip_low=cfg.clip, clip_high=cfg.clip, dual_clip=cfg.dual_clip,
                kl=k3_kl(logp, ref), kl_coef=cfg.kl_coef,
            )  # fmt: skip
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward untyped
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            opt.step()
            losses.append(info["loss"])
            kls.append(info["kl_mean"])
            clips.append(info["clip_fraction"])
    stats.steps = len(losses)
    stats.loss = sum(losses) / len(losses)
    stats.kl = sum(kls) / len(kls)
    stats.clip_fraction = sum(clips) / len(clips)
    return stats
