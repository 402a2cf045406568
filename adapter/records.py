"""One request-stream entry as the worker sees it: `StreamRecord`, parsed and checked by `parse_record`.

The gateway writes the entry (server/queue.py, `Record.fields`) with the fields id, image, question, options,
stream, answer, text, adapter_version, samples, confidence and ts. The worker needs the ones kept here; a
malformed entry raises `BadRecord`, which says which entry and which field is wrong.

Two keys identify a record for deduplication: `dedupe_key` (the request id; the gateway writes one entry per
id) and `content_key` (a sha256 of image key, question and options: the same image and question asked
again under another id, which would otherwise be trained on twice).

>>> r = parse_record(b"1-0", {b"id": b"r1", b"image": b"ttrv:image:ab", b"question": b"Which digit?",
...                          b"options": b"", b"stream": b"default", b"answer": b"7",
...                          b"adapter_version": b"3", b"ts": b"1700000000.5"})
>>> r.request_id, r.options, r.adapter_version, r.dedupe_key
('r1', None, 3, 'r1')
>>> r2 = parse_record("2-0", {"id": "r2", "image": "ttrv:image:ab", "question": "Which digit?", "options": "",
...                          "stream": "other", "answer": "1", "adapter_version": "0", "ts": "1700000001"})
>>> r.content_key == r2.content_key, r.dedupe_key == r2.dedupe_key
(True, False)
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

REQUIRED_FIELDS = ("id", "image", "question", "stream", "answer", "adapter_version", "ts")


class BadRecord(ValueError):  # noqa: N818 (the name the worker API promises)
    """A stream entry that cannot be used for training: a field is missing or unreadable."""

    def __init__(self, entry_id: str, problem: str):
        self.entry_id = entry_id
        self.problem = problem
        super().__init__(
            f"stream entry {entry_id} is malformed: {problem}; it is dead-lettered, not trained on "
            "(entries are written by the gateway, see server/queue.py `Record.fields`)"
        )


@dataclass(frozen=True)
class StreamRecord:
    """The fields of one request-stream entry that adaptation uses; `served_answer` is the gateway's."""

    entry_id: str
    request_id: str
    image_key: str
    question: str
    options: list[str] | None = field(hash=False)  # hash=False: a list cannot be hashed; eq still compares
    stream: str
    served_answer: str
    adapter_version: int
    ts: float

    @property
    def dedupe_key(self) -> str:
        """The request id: the gateway writes one entry per id, so a second entry with it is a duplicate."""
        return self.request_id

    @property
    def content_key(self) -> str:
        """sha256 of (image key, question, options): the same image and question under another request id."""
        blob = json.dumps([self.image_key, self.question, self.options], ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()


def parse_record(entry_id: bytes | str, fields: Mapping[bytes, bytes] | Mapping[str, str]) -> StreamRecord:
    """The record in one stream entry (bytes or str, as redis-py returns it); raises `BadRecord`.

    >>> parse_record("9-0", {"id": "r9", "image": "k", "question": "q"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    adapter.records.BadRecord: stream entry 9-0 is malformed: missing field(s) adapter_version, answer, ...
    """
    eid = entry_id.decode(errors="replace") if isinstance(entry_id, bytes) else entry_id
    text: dict[str, str] = {}
    for key, value in fields.items():
        try:
            name = key.decode() if isinstance(key, bytes) else key
            text[name] = value.decode() if isinstance(value, bytes) else value
        except UnicodeDecodeError:
            raise BadRecord(eid, f"field {key!r} is not UTF-8 text") from None
    missing = sorted(set(REQUIRED_FIELDS) - text.keys())
    if missing:
        raise BadRecord(eid, f"missing field(s) {', '.join(missing)}")
    for name in ("id", "image", "stream"):
        if not text[name].strip():
            raise BadRecord(eid, f"field {name!r} is empty")
    try:
        version = int(text["adapter_version"])
    except ValueError:
        raise BadRecord(eid, f"adapter_version {text['adapter_version']!r} is not an integer") from None
    if version < 0:
        raise BadRecord(eid, f"adapter_version {version} is negative")
    try:
        ts = float(text["ts"])
    except ValueError:
        raise BadRecord(eid, f"ts {text['ts']!r} is not a number") from None
    if not math.isfinite(ts):
        raise BadRecord(eid, f"ts {text['ts']!r} is not a finite number")
    return StreamRecord(
        entry_id=eid,
        request_id=text["id"],
        image_key=text["image"],
        question=text["question"],
        options=_options(eid, text.get("options", "")),
        stream=text["stream"],
        served_answer=text["answer"],
        adapter_version=version,
        ts=ts,
    )


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
