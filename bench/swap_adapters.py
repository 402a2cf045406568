"""Distinct adapter versions to swap between, made in seconds: each one answers a single digit to any image.

A chain of short supervised LoRA trainings (as the lifecycle integration test does): version k starts from
version k-1's weights and is pushed to answer digit d_k (12 steps on 16 images, about 1.5 s on one thread).
Consecutive versions answer different digits, so an answer tells which weights produced it, and the
benchmark can check that the version the gateway names is the one that answered. Each is saved as an
immutable folder `vN/` numbered by Redis, as the worker saves a candidate; registering it is left to the
swap, where the clock starts.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TRAIN_IMAGES = 16
TRAIN_STEPS = 12
LR = 1e-2


@dataclass(frozen=True)
class PreparedVersion:
    version: int
    path: Path
    digit: int  # what it answers
    parent: int  # the version its weights were trained from (0: a fresh LoRA on the base model)


def swap_digits(count: int) -> list[int]:
    """Digits 1, 4, 7, 0, 3, ...: every consecutive pair differs, and all ten come before any repeats.

    >>> swap_digits(12)
    [1, 4, 7, 0, 3, 6, 9, 2, 5, 8, 1, 4]
    """
    return [(1 + 3 * k) % 10 for k in range(count)]


async def _allocate(redis_url: str, count: int) -> list[int]:
    import redis.asyncio as aioredis

    from adapter.versions import next_version

    client = aioredis.Redis.from_url(redis_url)
    try:
        return [await next_version(client) for _ in range(count)]
    finally:
        await client.aclose()


def prepare_versions(
    model: Path, adapter_dir: Path, redis_url: str, images: list[np.ndarray], count: int, seed: int = 0
) -> list[PreparedVersion]:
    """Train and save `count` versions (not registered); torch runs on one thread meanwhile."""
    import torch
    from PIL import Image

    from adapter.digits.task import PROMPT
    from adapter.lora import LoraSpec
    from adapter.policy import Policy
    from adapter.versions import save_version

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # leave the other core to vLLM, which is already up
    try:
        policy = Policy(model, LoraSpec(rank=8, alpha=16.0, vision=True), seed=seed)
        prompts = [policy.prompt(Image.fromarray(im), PROMPT) for im in images[:TRAIN_IMAGES]]
        out: list[PreparedVersion] = []
        parent = 0
        for version, digit in zip(asyncio.run(_allocate(redis_url, count)), swap_digits(count), strict=True):
            target = policy.processor.tokenizer.convert_tokens_to_ids(str(digit))
            params = [p for p in policy.model.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=LR)
            for _ in range(TRAIN_STEPS):
                logprobs = policy.logprobs([(p, [target, policy.eos_id]) for p in prompts])
                loss = -torch.stack([lp.sum() for lp in logprobs]).mean()
                opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
            metadata = {"parent": parent, "bench": "hot_swap", "answers_digit": digit}
            path = save_version(policy, adapter_dir, version, metadata)
            out.append(PreparedVersion(version, path, digit, parent))
            parent = version
        return out
    finally:
        torch.set_num_threads(threads)
