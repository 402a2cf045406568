"""The request log: one Redis stream entry per answered request, written exactly once per request id.

Write path. One Lua script does, atomically and in one round trip: claim the request id (SET NX of the
answer, with a TTL), store the image under its sha256 (refreshing its TTL), and XADD the record. A retry
with the same request id finds the claim and gets the first answer back, and no second record is added.

Redis down. The answer has already been computed, so it is served anyway; the write goes to a bounded
in-memory buffer that a background task flushes, oldest first, when Redis is back. Past the bound the oldest
buffered record is dropped, counted in `ttrv_enqueue_failures_total` and logged: never lost silently.

Trimming. The stream keeps the newest `stream_maxlen` entries, and never trims past the oldest entry the
worker's consumer group has not acknowledged (neither its pending entries nor any not yet delivered): the
cut-off is min(oldest pending id, group's last-delivered id). Redis 7 has no ack-aware MAXLEN, hence MINID.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from core import keys
from core.records import DEFAULT_MIME, RequestRecord, StoredAnswer, stream_order, text
from core.wire import AnswerResponse
from server.metrics import GatewayMetrics

log = logging.getLogger("ttrv.queue")

_WRITE_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[2])
  return {1, redis.call('XADD', KEYS[3], '*', unpack(ARGV, 4))}
end
return {0, redis.call('GET', KEYS[1])}
"""


@dataclass(frozen=True)
class Record:
    """One answered request on its way into Redis: the reply, the image bytes and what the stream keeps."""

    response: AnswerResponse
    image: bytes
    image_sha256: str
    question: str
    options: list[str] | None
    stream: str
    samples: int
    created_at: float
    mime: str = DEFAULT_MIME
    completion: dict[str, Any] | None = None  # the reply of a chat completion (`StoredAnswer.completion`)

    def request_record(self) -> RequestRecord:
        return RequestRecord.of_answer(
            self.response,
            image_key=keys.image(self.image_sha256),
            mime=self.mime,
            question=self.question,
            options=self.options,
            stream=self.stream,
            samples=self.samples,
            ts=self.created_at,
        )

    def stored(self) -> str:
        return StoredAnswer(
            **self.response.model_dump(),
            image=keys.image(self.image_sha256),
            mime=self.mime,
            question=self.question,
            options=self.options,
            completion=self.completion,
        ).model_dump_json()

    def fields(self) -> list[str]:
        """The stream entry's fields (`RequestRecord.fields`), flat, as the write script takes them."""
        return [x for kv in self.request_record().fields().items() for x in kv]


class RecordLog:
    def __init__(
        self, redis: aioredis.Redis, metrics: GatewayMetrics, ttl_s: int, maxlen: int, buffer_max: int
    ):
        self.redis = redis
        self.metrics = metrics
        self.ttl_s = ttl_s
        self.maxlen = maxlen
        self.buffer: collections.deque[Record] = collections.deque()
        self.buffer_max = buffer_max
        self._script = redis.register_script(_WRITE_SCRIPT)
        self._writes = 0
        self._backlog = (0.0, 0)  # (measured at, value)
        self._flushed = asyncio.Event()

    async def ensure_group(self) -> None:
        """Create the worker's consumer group from id 0, so records before the first worker are kept."""
        try:
            await self.redis.xgroup_create(keys.REQUESTS, keys.WORKER_GROUP, id="0", mkstream=True)
        except ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise

    async def served(self, request_id: str) -> StoredAnswer | None:
        """The answer given to `request_id`, if Redis has it; raises RedisError when Redis is down."""
        raw = await self.redis.get(keys.answer(request_id))
        return None if raw is None else StoredAnswer.model_validate_json(raw)

    async def lookup(self, request_id: str) -> AnswerResponse | None:
        """Like `served`, for idempotent retries: while Redis is down, the buffer is searched instead."""
        try:
            stored = await self.served(request_id)
        except RedisError:
            return next((r.response for r in self.buffer if r.response.id == request_id), None)
        return None if stored is None else stored.response()

    async def write(self, record: Record) -> AnswerResponse:
        """Store `record` once; returns the answer that stands for its id (the first one, on a repeat)."""
        try:
            return await self._write(record)
        except RedisError as err:
            self._buffer(record, err)
            return record.response

    async def _write(self, record: Record) -> AnswerResponse:
        args: list[bytes | str] = [
            record.stored(),
            str(self.ttl_s),
            record.image,
            *record.fields(),
        ]
        key_list = [keys.answer(record.response.id), keys.image(record.image_sha256), keys.REQUESTS]
        created, value = cast(list[Any], await self._script(keys=key_list, args=args))
        self._writes += 1
        if self._writes % 1000 == 0:
            await self.trim()
        if created:
            return record.response
        return AnswerResponse.model_validate_json(value)  # the stored extras are ignored

    def _buffer(self, record: Record, err: Exception) -> None:
        if len(self.buffer) >= self.buffer_max:
            lost = self.buffer.popleft()
            self.metrics.enqueue_failures.inc()
            log.error("record buffer full (%d): dropped record %s", self.buffer_max, lost.response.id)
        if not self.buffer:
            log.warning("Redis unavailable (%s): buffering records in memory", type(err).__name__)
        self.buffer.append(record)
        self.metrics.buffered.set(len(self.buffer))

    async def flush_forever(self, interval_s: float = 0.5) -> None:
        """Background task: move buffered records into Redis, oldest first, once it answers again."""
        while True:
            await asyncio.sleep(interval_s)
            while self.buffer:
                try:
                    await self._write(self.buffer[0])
                except RedisError:
                    break
                self.buffer.popleft()
                self.metrics.buffered.set(len(self.buffer))
                if not self.buffer:
                    log.info("Redis is back: buffered records flushed")

    async def backlog(self, max_age_s: float = 1.0) -> int:
        """Records the worker has not acknowledged yet (read at most once per `max_age_s`)."""
        measured_at, value = self._backlog
        if time.monotonic() - measured_at < max_age_s:
            return value
        groups = await self.redis.xinfo_groups(keys.REQUESTS)
        group = next((g for g in groups if text(g["name"]) == keys.WORKER_GROUP), None)
        if group is None:
            value = 0
        else:
            lag = group.get("lag")
            value = int(group["pending"]) + (
                int(lag) if lag is not None else int(await self.redis.xlen(keys.REQUESTS))
            )
        self._backlog = (time.monotonic(), value)
        return value

    async def trim(self, batch: int = 10_000) -> int:
        """Trim the oldest entries beyond `maxlen`, never past what the worker has not acknowledged."""
        excess = int(await self.redis.xlen(keys.REQUESTS)) - self.maxlen
        if excess <= 0:
            return 0
        groups = await self.redis.xinfo_groups(keys.REQUESTS)
        group = next((g for g in groups if text(g["name"]) == keys.WORKER_GROUP), None)
        if group is None:
            return 0
        safe = text(group["last-delivered-id"])
        pending = await self.redis.xpending(keys.REQUESTS, keys.WORKER_GROUP)
        if pending["pending"]:
            safe = min(safe, text(pending["min"]), key=stream_order)
        head = cast(
            list[tuple[bytes, Any]],
            await self.redis.xrange(keys.REQUESTS, "-", "+", count=min(excess, batch) + 1),
        )
        cutoff = min(text(head[-1][0]), safe, key=stream_order)
        return int(await self.redis.xtrim(keys.REQUESTS, minid=cutoff, approximate=False))
