"""Labeled checks: how often a version's greedy answer is right, on a probe file or on delayed feedback.

Labels never train anything; they only guard what is served. Two sources:
- a **probe file** (TTRV rows with `answer`, `TTRV_PROBE_PATH`): a fixed labeled sample the operator keeps
  representative of current traffic;
- **delayed feedback** (`POST /v1/feedback`): recent requests whose true answer arrived later. The feedback
  stream keeps each request's image key and question, and the image is still in Redis (until its TTL), so
  any version can be asked the same question again.

Versions are always compared on the *same* items (paired), never on whatever each happened to serve: under
drift, a version that served clean images earlier would otherwise look better than one serving shifted ones.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import redis.asyncio as aioredis

from adapter.answers import extract_answer, matches_label
from adapter.registry import entries
from adapter.rollouts import image_mime
from clients.rows import read_rows
from server import keys
from server.answering import render_question
from server.engine import AdapterNotLoadedError, EngineClient

EVAL_PRIORITY = 5  # after served answers (0), before adaptation rollouts (10)


@dataclass(frozen=True)
class LabeledItem:
    key: str  # probe row id, or the request id of a feedback label
    image: bytes
    question: str  # as the model sees it (options rendered)
    options: list[str] | None
    label: str
    served_version: int | None = None  # feedback only: the version that answered it
    served_correct: bool | None = None  # feedback only: whether that answer was right


def load_probe(path: Path) -> list[LabeledItem]:
    """The labeled rows of a probe file; rows without an `answer` are of no use here and are skipped."""
    items = []
    for row in read_rows(path):
        if row.answer is not None:
            items.append(LabeledItem(row.id, row.image_path.read_bytes(), row.prompt, None, row.answer))
    return items


async def recent_feedback(redis: aioredis.Redis, count: int) -> list[LabeledItem]:
    """The latest `count` labels (one per request, the latest wins) whose images are still in Redis."""
    latest: dict[str, dict[str, str]] = {}
    for _, fields in entries(await redis.xrevrange(keys.FEEDBACK, count=count)):
        if fields.get("image") and fields["id"] not in latest:  # entries from before images were kept: skip
            latest[fields["id"]] = fields
    if not latest:
        return []
    images = cast(list[bytes | None], await redis.mget([f["image"] for f in latest.values()]))
    items = []
    for fields, image in zip(latest.values(), images, strict=True):
        if image is None:
            continue  # expired: nothing to ask again
        options = json.loads(fields["options"]) if fields.get("options") else None
        items.append(
            LabeledItem(
                key=fields["id"],
                image=image,
                question=render_question(fields["question"], options),
                options=options,
                label=fields["label"],
                served_version=int(fields["adapter_version"]),
                served_correct=fields["correct"] == "1",
            )
        )
    return list(reversed(items))  # oldest first


class Evaluator:
    """Greedy answers of one engine name on labeled items, a few requests at a time."""

    def __init__(self, engine: EngineClient, max_tokens: int, concurrency: int = 8):
        self.engine = engine
        self.max_tokens = max_tokens
        self.slots = asyncio.Semaphore(concurrency)

    async def correct(self, model: str, items: Sequence[LabeledItem], path: str | None = None) -> list[bool]:
        """Whether `model`'s greedy answer is right, per item. With `path`, an adapter that another process
        unloaded meanwhile (vLLM's 404) is loaded again and the request retried."""

        async def one(item: LabeledItem) -> bool:
            for attempt in range(3):
                try:
                    async with self.slots:
                        texts = await self.engine.complete(
                            model, item.image, image_mime(item.image), item.question,
                            max_tokens=self.max_tokens, priority=EVAL_PRIORITY,
                        )  # fmt: skip
                    break
                except AdapterNotLoadedError:
                    if path is None or attempt == 2:
                        raise
                    await self.engine.load_adapter(model, path)
            return matches_label(extract_answer(texts[0], item.options) or "", item.label)

        return list(await asyncio.gather(*(one(i) for i in items)))

    async def accuracy(self, model: str, items: Sequence[LabeledItem], path: str | None = None) -> float:
        marks = await self.correct(model, items, path)
        return sum(marks) / len(marks) if marks else 0.0
