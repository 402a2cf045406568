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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import redis.asyncio as aioredis

from core import keys
from core.answers import AnswerExtractor, is_correct, render_question
from core.images import sniff_mime
from core.records import FeedbackRecord, entries
from core.routing import AdapterEngine, Route
from core.rows import read_rows

EVAL_PRIORITY = 5  # after served answers (0), before adaptation rollouts (10)


@dataclass(frozen=True)
class LabeledItem:
    key: str  # probe row id, or the request id of a feedback label
    image: bytes
    question: str  # as the model sees it (options rendered)
    options: list[str] | None
    label: str
    mime: str = "image/png"
    served_version: int | None = None  # feedback only: the version that answered it
    served_correct: bool | None = None  # feedback only: whether that answer was right


def load_probe(path: Path) -> list[LabeledItem]:
    """The labeled rows of a probe file; rows without an `answer` are of no use here and are skipped."""
    items = []
    for row in read_rows(path):
        if row.answer is not None:
            image = row.image_path.read_bytes()
            items.append(LabeledItem(row.id, image, row.prompt, None, row.answer, sniff_mime(image)))
    return items


async def recent_feedback(redis: aioredis.Redis, count: int) -> list[LabeledItem]:
    """The latest `count` labels (one per request, the latest wins) whose images are still in Redis."""
    latest: dict[str, FeedbackRecord] = {}
    for entry_id, fields in entries(await redis.xrevrange(keys.FEEDBACK, count=count)):
        feedback = FeedbackRecord.parse(entry_id, fields)
        # Entries from before images were kept cannot be asked again: skipped.
        if feedback.image_key and feedback.request_id not in latest:
            latest[feedback.request_id] = feedback
    if not latest:
        return []
    images = cast(list[bytes | None], await redis.mget([f.image_key for f in latest.values()]))
    items = []
    for feedback, image in zip(latest.values(), images, strict=True):
        if image is None:
            continue  # expired: nothing to ask again
        items.append(
            LabeledItem(
                key=feedback.request_id,
                image=image,
                question=render_question(feedback.question, feedback.options),
                options=feedback.options,
                label=feedback.label,
                mime=feedback.mime,
                served_version=feedback.adapter_version,
                served_correct=feedback.correct,
            )
        )
    return list(reversed(items))  # oldest first


class Evaluator:
    """Greedy answers of one version on labeled items, a few requests at a time. A version that another
    process unloaded meanwhile is loaded again from its route's folder (`AdapterEngine.complete`)."""

    def __init__(
        self,
        adapters: AdapterEngine,
        max_tokens: int,
        concurrency: int = 8,
        extract: AnswerExtractor | None = None,
    ):
        self.adapters = adapters
        self.extract = extract  # the task's extractor (TTRV_ANSWER_EXTRACTOR); None: the default
        self.max_tokens = max_tokens
        self.slots = asyncio.Semaphore(concurrency)

    async def correct(self, route: Route, items: Sequence[LabeledItem]) -> list[bool]:
        """Whether `route`'s greedy answer is right, per item (`core.answers.is_correct`)."""

        async def one(item: LabeledItem) -> bool:
            async with self.slots:
                texts, _ = await self.adapters.complete(
                    route, item.image, item.mime, item.question,
                    max_tokens=self.max_tokens, priority=EVAL_PRIORITY,
                )  # fmt: skip
            return is_correct(texts[0], item.label, item.options, self.extract)

        return list(await asyncio.gather(*(one(i) for i in items)))

    async def accuracy(self, route: Route, items: Sequence[LabeledItem]) -> float:
        marks = await self.correct(route, items)
        return sum(marks) / len(marks) if marks else 0.0
