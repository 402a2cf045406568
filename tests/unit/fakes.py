"""Hand-written fakes for the gateway's unit tests (integration tests use the real Redis and vLLM)."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from core.engine import AdapterNotLoadedError, EngineUnavailableError


@dataclass
class FakeEngine:
    """Answers from a script: `replies` are returned in turn (the last one repeats)."""

    replies: list[list[str]] = field(default_factory=lambda: [["7"]])
    loaded: set[str] = field(default_factory=lambda: {"base"})
    down: bool = False
    calls: list[dict[str, object]] = field(default_factory=list)
    loads: list[tuple[str, str]] = field(default_factory=list)

    async def complete(
        self, model: str, image: bytes, mime: str, question: str, **options: object
    ) -> list[str]:
        if self.down:
            raise EngineUnavailableError("fake engine is down")
        if model not in self.loaded:
            raise AdapterNotLoadedError(model)
        self.calls.append({"model": model, "mime": mime, "question": question, **options})
        return self.replies[min(len(self.calls) - 1, len(self.replies) - 1)]

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """A chat completion as vLLM gives it: one choice per `n`, the scripted texts."""
        texts = await self.complete(str(body["model"]), b"", "", "", **{"n": body.get("n", 1)})
        self.calls[-1]["body"] = body
        choices = [
            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
            for i, t in enumerate(texts)
        ]
        usage = {"prompt_tokens": 9, "completion_tokens": len(texts), "total_tokens": 9 + len(texts)}
        return {"id": "chatcmpl-vllm", "object": "chat.completion", "created": 1, "model": body["model"],
                "choices": choices, "usage": usage}  # fmt: skip

    @contextlib.asynccontextmanager
    async def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[AsyncIterator[str]]:
        """vLLM's server-sent events for the same completion: a role chunk, one content chunk per
        character of each choice, a finish chunk, the usage chunk when asked, then [DONE]."""
        reply = await self.chat(body)

        async def lines() -> AsyncIterator[str]:
            base = {
                "id": "chatcmpl-vllm",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": body["model"],
            }
            for choice in reply["choices"]:
                i = choice["index"]
                deltas = [
                    {"role": "assistant", "content": ""},
                    *({"content": c} for c in choice["message"]["content"]),
                ]
                for delta in deltas:
                    yield "data: " + json.dumps(
                        {**base, "choices": [{"index": i, "delta": delta, "finish_reason": None}]}
                    )
                    yield ""
                yield "data: " + json.dumps(
                    {**base, "choices": [{"index": i, "delta": {}, "finish_reason": "stop"}]}
                )
                yield ""
            if (body.get("stream_options") or {}).get("include_usage"):
                yield "data: " + json.dumps({**base, "choices": [], "usage": reply["usage"]})
                yield ""
            yield "data: [DONE]"
            yield ""

        yield lines()

    async def load_adapter(self, name: str, path: str) -> None:
        if self.down:
            raise EngineUnavailableError("fake engine is down")
        self.loads.append((name, path))
        self.loaded.add(name)

    async def unload_adapter(self, name: str) -> None:
        self.loaded.discard(name)

    async def loaded_models(self) -> set[str]:
        if self.down:
            raise EngineUnavailableError("fake engine is down")
        return set(self.loaded)

    async def healthy(self) -> bool:
        return not self.down

    async def aclose(self) -> None:
        return None


def png(width: int = 56, height: int = 56, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()
