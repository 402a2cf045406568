"""Small helpers shared by the integration tests: digit images as PNG, one chat request to vLLM, an adapter
trained to answer one digit (so that an answer tells which weights produced it)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from adapter.digits.task import PROMPT
from adapter.lora import LoraSpec
from adapter.policy import Policy
from core.chat import image_chat_body


def png_bytes(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def chat(client: httpx.Client, model: str, image: np.ndarray, **options: Any) -> dict[str, Any]:
    """One `/v1/chat/completions` call about one digit image; raises on a non-2xx reply."""
    reply = client.post(
        "/v1/chat/completions", json=image_chat_body(model, png_bytes(image), PROMPT, **options)
    )
    reply.raise_for_status()
    body: dict[str, Any] = reply.json()
    return body


def greedy_answer(client: httpx.Client, model: str, image: np.ndarray) -> str:
    return str(chat(client, model, image)["choices"][0]["message"]["content"])


def train_to_answer(policy: Policy, digit: int, images: Sequence[np.ndarray], steps: int) -> None:
    """Supervised steps toward answering `digit` to every image (in place)."""
    import torch

    prompts = [policy.prompt(Image.fromarray(im), PROMPT) for im in images]
    target = policy.processor.tokenizer.convert_tokens_to_ids(str(digit))
    opt = torch.optim.AdamW([p for p in policy.model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        logprobs = policy.logprobs([(p, [target, policy.eos_id]) for p in prompts])
        loss = -torch.stack([lp.sum() for lp in logprobs]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def digit_policy(model_dir: Path, digit: int, images: Sequence[np.ndarray]) -> Policy:
    """A LoRA (language model + vision) trained, supervised and for a few steps, to answer `digit` to most
    images: versions that answer differently, so an answer tells which weights produced it."""
    policy = Policy(model_dir, LoraSpec(rank=8, alpha=16.0, vision=True), seed=digit)
    train_to_answer(policy, digit, images, steps=12)
    return policy
