"""The request log's delivery rules: trimming never drops what the worker has not acknowledged, and the
Redis-down buffer is bounded, counting what it drops."""

from __future__ import annotations

import asyncio
import time

import fakeredis
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from core import keys
from core.wire import AnswerResponse
from server.metrics import GatewayMetrics
from server.queue import Record, RecordLog


def record(i: int) -> Record:
    response = AnswerResponse(
        id=f"r{i}", answer="1", text="1", adapter_version=0, confidence=None, latency_ms=1.0
    )
    return Record(response, b"png", "sha", "q", None, "default", 1, time.time())


async def ids(redis: fakeredis.FakeAsyncRedis) -> list[str]:
    return [f[b"id"].decode() for _, f in await redis.xrange(keys.REQUESTS)]


def test_trim_keeps_every_entry_the_worker_has_not_acknowledged() -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        log = RecordLog(redis, GatewayMetrics(), ttl_s=60, maxlen=5, buffer_max=10)
        await log.ensure_group()
        for i in range(20):
            await log.write(record(i))
        # The worker has read 12 entries and acknowledged the first 8 of them.
        read = await redis.xreadgroup(keys.WORKER_GROUP, "w1", {keys.REQUESTS: ">"}, count=12)
        entry_ids = [entry_id for entry_id, _ in read[0][1]]
        await redis.xack(keys.REQUESTS, keys.WORKER_GROUP, *entry_ids[:8])
        removed = await log.trim()
        assert removed == 8  # only the acknowledged ones, although maxlen=5 asks for 15
        assert await ids(redis) == [f"r{i}" for i in range(8, 20)]
        # Once everything is acknowledged, the stream comes down to maxlen.
        rest = await redis.xreadgroup(keys.WORKER_GROUP, "w1", {keys.REQUESTS: ">"}, count=100)
        await redis.xack(keys.REQUESTS, keys.WORKER_GROUP, *entry_ids[8:], *[e for e, _ in rest[0][1]])
        await log.trim()
        assert await ids(redis) == [f"r{i}" for i in range(15, 20)]

    asyncio.run(scenario())


def test_backlog_counts_pending_and_undelivered_entries() -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        log = RecordLog(redis, GatewayMetrics(), ttl_s=60, maxlen=100, buffer_max=10)
        await log.ensure_group()
        for i in range(6):
            await log.write(record(i))
        await redis.xreadgroup(keys.WORKER_GROUP, "w1", {keys.REQUESTS: ">"}, count=4)
        assert await log.backlog(max_age_s=0) == 6  # 4 pending + 2 never delivered

    asyncio.run(scenario())


class DownRedis(fakeredis.FakeAsyncRedis):
    """A Redis whose every command fails, as when the server is gone."""

    def register_script(self, script: str):  # type: ignore[no-untyped-def]
        async def fail(*args: object, **kwargs: object) -> None:
            raise RedisConnectionError("down")

        return fail

    async def get(self, name: str) -> None:  # type: ignore[override]
        raise RedisConnectionError("down")


def test_buffer_is_bounded_and_counts_what_it_drops() -> None:
    async def scenario() -> None:
        metrics = GatewayMetrics()
        log = RecordLog(DownRedis(), metrics, ttl_s=60, maxlen=100, buffer_max=3)
        for i in range(5):
            served = await log.write(record(i))
            assert served.id == f"r{i}"  # the answer is served although Redis is down
        assert [r.response.id for r in log.buffer] == ["r2", "r3", "r4"]  # the oldest were dropped
        assert metrics.enqueue_failures._value.get() == pytest.approx(2)
        assert metrics.buffered._value.get() == 3
        assert (await log.lookup("r3")) is not None  # idempotency still works from the buffer

    asyncio.run(scenario())
