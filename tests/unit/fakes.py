"""Hand-written fakes for the gateway's unit tests (integration tests use the real Redis and vLLM)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

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
