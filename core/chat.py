"""OpenAI chat-completion bodies for one image and one question, as vLLM's server takes them."""

from __future__ import annotations

import base64
from typing import Any


def image_data_url(image: bytes, mime: str = "image/png") -> str:
    """A `data:` URL; vLLM decodes it itself, so the gateway never hands vLLM a path or a remote URL.

    >>> image_data_url(b"abc")
    'data:image/png;base64,YWJj'
    """
    return f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"


def image_chat_body(
    model: str,
    image: bytes,
    question: str,
    *,
    mime: str = "image/png",
    n: int = 1,
    temperature: float = 0.0,
    max_tokens: int = 16,
    priority: int = 0,
    seed: int | None = None,
    logprobs: bool = False,
) -> dict[str, Any]:
    """Body of `POST /v1/chat/completions`: the image first, then the question, as the model was trained.

    `priority` is vLLM's: a lower value is scheduled earlier (served answers 0, adaptation rollouts higher).
    """
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": image_data_url(image, mime)}},
                    {"type": "text", "text": question},
                ],
            }
        ],
        "n": n,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "priority": priority,
        "return_token_ids": True,
    }
    if seed is not None:
        body["seed"] = seed
    if logprobs:
        body["logprobs"] = True
    return body
