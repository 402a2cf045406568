"""Rollouts from the serving vLLM: N sampled answers per record, at a lower priority than served answers.

The engine returns the prompt's and each completion's token ids (`return_token_ids`), so the trainer can
score exactly the sampled tokens. Vision placeholder tokens are banned from sampling (`logit_bias`): they
are never an answer, and one inside a completion would break the trainer's forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from core.chat import image_chat_body
from core.engine import KEEPALIVE_S


@dataclass
class Sampled:
    prompt_token_ids: list[int]
    completions: list[list[int]]
    texts: list[str]


class VllmRollouts:
    def __init__(self, base_url: str, priority: int, banned_tokens: list[int], timeout_s: float = 300.0):
        # Idle connections expire before vLLM closes them (see `core.engine.KEEPALIVE_S`).
        limits = httpx.Limits(keepalive_expiry=KEEPALIVE_S)
        self.http = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, limits=limits)
        self.priority = priority
        self.logit_bias = {str(t): -100 for t in banned_tokens}

    async def aclose(self) -> None:
        await self.http.aclose()

    async def sample(
        self, model: str, image: bytes, mime: str, question: str, n: int, temperature: float, max_tokens: int
    ) -> Sampled:
        body: dict[str, Any] = image_chat_body(
            model, image, question, mime=mime, n=n, temperature=temperature,
            max_tokens=max_tokens, priority=self.priority,
        )  # fmt: skip
        body.update({"top_p": 1.0, "top_k": -1, "logit_bias": self.logit_bias})
        reply = await self.http.post("/v1/chat/completions", json=body)
        reply.raise_for_status()
        out = reply.json()
        choices = out["choices"]
        return Sampled(
            [int(t) for t in out["prompt_token_ids"]],
            [[int(t) for t in c["token_ids"]] for c in choices],
            [str(c["message"]["content"] or "") for c in choices],
        )
