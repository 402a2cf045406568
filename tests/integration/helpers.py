"""Small helpers shared by the integration tests: digit images as PNG, one chat request to vLLM."""

from __future__ import annotations

import io
from typing import Any

import httpx
import numpy as np
from PIL import Image

from adapter.digits.task import PROMPT
from server.chat import image_chat_body


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
