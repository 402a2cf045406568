"""The schemas of the Redis streams, each with its writer and its reader side by side.

- `RequestRecord`: one entry of `keys.REQUESTS` per answered request. The gateway writes it
  (`RequestRecord.fields`, through `server.queue`); the worker reads it (`RequestRecord.parse`, through
  `adapter.consumer`).
- `StoredAnswer`: the value of `keys.answer(request_id)`, the reply given to a request id (idempotent
  retries, and what `POST /v1/feedback` labels).
- `FeedbackRecord`: one entry of `keys.FEEDBACK` per delayed label. The feedback route writes it; the gate,
  the rollback check and the accuracy metrics read it.

Stream fields are text. A field added here is written and read in one change; a reader never depends on a
field an older writer did not write (it gets a default), so a worker reads entries written before an upgrade.

>>> record = RequestRecord(request_id="r1", image_key="ttrv:image:ab", mime="image/jpeg",
...     question="Which digit?", options=None, stream="default", served_answer="7", adapter_version=3,
...     ts=1700000000.5)
>>> parsed = RequestRecord.parse("1-0", record.fields())
>>> parsed.entry_id, parsed.mime, parsed.options, parsed.served_answer
('1-0', 'image/jpeg', None, '7')
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.wire import AnswerResponse

DEFAULT_MIME = "image/png"  # entries written before the MIME type was kept held PNG images


class BadRecord(ValueError):  # noqa: N818 (the name the worker API promises)
    """A stream entry that cannot be used: a field is missing or unreadable."""

    def __init__(self, entry_id: str, problem: str):
        self.entry_id = entry_id
        self.problem = problem
        super().__init__(
            f"stream entry {entry_id} is malformed: {problem}; it is dead-lettered, not trained on "
            "(entries are written by the gateway, see core/records.py `RequestRecord.fields`)"
        )


@dataclass(frozen=True)
class RequestRecord:
    """One answered request as the stream keeps it; `served_answer` is the answer the gateway gave."""

    request_id: str
    image_key: str  # keys.image(sha256): the bytes are stored once, content-addressed, with a TTL
    question: str  # as the client sent it (options not rendered)
    options: list[str] | None = field(hash=False)  # hash=False: a list cannot be hashed; eq still compares
    stream: str
    served_answer: str
    adapter_version: int
    ts: float
    mime: str = DEFAULT_MIME
    text: str = ""  # the model's raw text (first sample)
    samples: int = 1
    confidence: float | None = None
    entry_id: str = ""  # the stream entry id; "" until the record is written

    @property
    def dedupe_key(self) -> str:
        """The request id: the gateway writes one entry per id, so a second entry with it is a duplicate."""
        return self.request_id

    @property
    def content_key(self) -> str:
        """sha256 of (image key, question, options): the same image and question under another request id."""
        blob = json.dumps([self.image_key, self.question, self.options], ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    @classmethod
    def of_answer(
        cls,
        response: AnswerResponse,
        *,
        image_key: str,
        mime: str,
        question: str,
        options: list[str] | None,
        stream: str,
        samples: int,
        ts: float,
    ) -> RequestRecord:
        """The record of a reply the gateway just gave."""
        return cls(
            request_id=response.id,
            image_key=image_key,
            question=question,
            options=options,
            stream=stream,
            served_answer=response.answer,
            adapter_version=response.adapter_version,
            ts=ts,
            mime=mime,
            text=response.text,
            samples=samples,
            confidence=response.confidence,
        )

    def fields(self) -> dict[str, str]:
        """The writer: the entry's fields, as `XADD` stores them."""
        return {
            "id": self.request_id,
            "image": self.image_key,
            "mime": self.mime,
            "question": self.question,
            "options": json.dumps(self.options) if self.options else "",
            "stream": self.stream,
            "answer": self.served_answer,
            "text": self.text,
            "adapter_version": str(self.adapter_version),
            "samples": str(self.samples),
            "confidence": "" if self.confidence is None else f"{self.confidence:.4f}",
            "ts": f"{self.ts:.3f}",
        }

    @classmethod
    def parse(cls, entry_id: bytes | str, fields: Mapping[bytes, bytes] | Mapping[str, str]) -> RequestRecord:
        """The reader: the record in one stream entry (bytes or str, as redis-py returns it).

        Raises `BadRecord`, naming the entry and the field, when the entry cannot be used.

        >>> RequestRecord.parse("9-0", {"id": "r9", "image": "k", "question": "q"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        core.records.BadRecord: stream entry 9-0 is malformed: missing field(s) adapter_version, answer, ...
        """
        eid = entry_id.decode(errors="replace") if isinstance(entry_id, bytes) else entry_id
        values = _decoded(eid, fields)
        missing = sorted(set(REQUIRED_FIELDS) - values.keys())
        if missing:
            raise BadRecord(eid, f"missing field(s) {', '.join(missing)}")
        for name in ("id", "image", "stream"):
            if not values[name].strip():
                raise BadRecord(eid, f"field {name!r} is empty")
        version = _int(eid, values, "adapter_version")
        if version < 0:
            raise BadRecord(eid, f"adapter_version {version} is negative")
        ts = _float(eid, values, "ts")
        confidence = _float(eid, values, "confidence") if values.get("confidence") else None
        return cls(
            entry_id=eid,
            request_id=values["id"],
            image_key=values["image"],
            question=values["question"],
            options=_options(eid, values.get("options", "")),
            stream=values["stream"],
            served_answer=values["answer"],
            adapter_version=version,
            ts=ts,
            mime=values.get("mime") or DEFAULT_MIME,
            text=values.get("text", ""),
            samples=_int(eid, values, "samples") if values.get("samples") else 1,
            confidence=confidence,
        )


REQUIRED_FIELDS = ("id", "image", "question", "stream", "answer", "adapter_version", "ts")


def parse_record(entry_id: bytes | str, fields: Mapping[bytes, bytes] | Mapping[str, str]) -> RequestRecord:
    """`RequestRecord.parse`, as a function (the consumer's reader)."""
    return RequestRecord.parse(entry_id, fields)


class StoredAnswer(AnswerResponse):
    """What `keys.answer(request_id)` holds: the reply, and what a labeled re-evaluation needs to ask again
    (the gate and rollback check compare versions on requests that got a label through /v1/feedback)."""

    image: str = ""  # key of the image bytes (keys.image)
    mime: str = DEFAULT_MIME
    question: str = ""
    options: list[str] | None = None
    completion: dict[str, Any] | None = None  # a chat completion's reply, given again to a repeat of its key

    def response(self) -> AnswerResponse:
        """The reply as it was given (the stored extras dropped)."""
        return AnswerResponse.model_validate(self.model_dump(include=set(AnswerResponse.model_fields)))


@dataclass(frozen=True)
class FeedbackRecord:
    """A delayed label of an answered request, with what is needed to ask any version the same question."""

    request_id: str
    label: str
    served_answer: str
    adapter_version: int  # the version that answered it
    correct: bool  # whether that answer matched the label (`core.answers.is_correct`)
    ts: float
    image_key: str
    question: str  # as the client sent it (options not rendered)
    options: list[str] | None = field(hash=False)
    mime: str = DEFAULT_MIME

    @classmethod
    def of_answer(cls, stored: StoredAnswer, label: str, correct: bool, ts: float) -> FeedbackRecord:
        return cls(
            request_id=stored.id,
            label=label,
            served_answer=stored.answer,
            adapter_version=stored.adapter_version,
            correct=correct,
            ts=ts,
            image_key=stored.image,
            question=stored.question,
            options=stored.options,
            mime=stored.mime,
        )

    def fields(self) -> dict[str, str]:
        """The writer: the entry's fields, as `XADD` stores them."""
        return {
            "id": self.request_id,
            "label": self.label,
            "answer": self.served_answer,
            "adapter_version": str(self.adapter_version),
            "correct": "1" if self.correct else "0",
            "ts": f"{self.ts:.3f}",
            "image": self.image_key,
            "mime": self.mime,
            "question": self.question,
            "options": json.dumps(self.options) if self.options else "",
        }

    @classmethod
    def parse(cls, entry_id: str, fields: Mapping[str, str]) -> FeedbackRecord:
        """The reader. Entries written before images were kept have an empty `image_key`: they count for
        accuracy, but cannot be asked again.

        >>> fb = FeedbackRecord("r1", "7", "7", 2, True, 1.5, "ttrv:image:ab", "Which digit?", None)
        >>> FeedbackRecord.parse("1-0", fb.fields()) == fb
        True
        """
        return cls(
            request_id=fields["id"],
            label=fields["label"],
            served_answer=fields.get("answer", ""),
            adapter_version=_int(entry_id, fields, "adapter_version"),
            correct=fields.get("correct") == "1",
            ts=_float(entry_id, fields, "ts"),
            image_key=fields.get("image", ""),
            question=fields.get("question", ""),
            options=_options(entry_id, fields.get("options", "")),
            mime=fields.get("mime") or DEFAULT_MIME,
        )


# --- stream entries as redis-py returns them ---------------------------------------------------------------


def text(value: bytes | str) -> str:
    """A reply value as text, whether the client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else value


def entries(raw: Any) -> list[tuple[str, dict[str, str]]]:
    """Stream entries from XRANGE/XREVRANGE as text, whether the client decodes responses or not."""
    return [(text(i), {text(k): text(v) for k, v in fields.items()}) for i, fields in raw or []]


def stream_order(entry_id: str) -> tuple[int, int]:
    """Sort key of stream entry ids.

    >>> sorted(["2-0", "1-10", "1-2"], key=stream_order)
    ['1-2', '1-10', '2-0']
    """
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _decoded(entry_id: str, fields: Mapping[bytes, bytes] | Mapping[str, str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, value in fields.items():
        try:
            values[text(key)] = text(value)
        except UnicodeDecodeError:
            raise BadRecord(entry_id, f"field {key!r} is not UTF-8 text") from None
    return values


def _int(entry_id: str, values: Mapping[str, str], name: str) -> int:
    try:
        return int(values[name])
    except ValueError:
        raise BadRecord(entry_id, f"{name} {values[name]!r} is not an integer") from None


def _float(entry_id: str, values: Mapping[str, str], name: str) -> float:
    try:
        number = float(values[name])
    except ValueError:
        raise BadRecord(entry_id, f"{name} {values[name]!r} is not a number") from None
    if not math.isfinite(number):
        raise BadRecord(entry_id, f"{name} {values[name]!r} is not a finite number")
    return number


def _options(entry_id: str, raw: str) -> list[str] | None:
    """Empty (what the gateway writes without options) and [] mean None; else a JSON list of strings."""
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise BadRecord(entry_id, f"options {raw[:80]!r} is not JSON") from None
    if not isinstance(value, list) or not all(isinstance(o, str) for o in value):
        raise BadRecord(entry_id, f"options {raw[:80]!r} is not a JSON list of strings")
    return list(value) or None
