"""The worker's stream consumer on a real redis-server: the unit scenarios again, and a consumer process
killed with SIGKILL after it polled, whose entries a successor takes over without losing any.

Every test uses a stream of its own (never `keys.REQUESTS`: the gateway tests count entries there) and
deletes it afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from adapter.consumer import StreamConsumer
from core import keys
from tests.integration.conftest import RedisServer
from tests.unit.test_consumer import (
    REAL_REDIS_SCENARIOS,
    SCENARIOS,
    Scenario,
    add,
    consumer,
    dead_letters,
    pending,
    request_ids,
    unique_stream,
)

ROOT = Path(__file__).resolve().parents[2]

# A worker that takes `batch` entries and then hangs, holding them uncommitted, until it is killed.
WORKER = """
import asyncio, json, sys
import redis.asyncio as aioredis
from adapter.consumer import StreamConsumer

async def main() -> None:
    url, stream, name, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    redis = aioredis.Redis.from_url(url)
    c = StreamConsumer(redis, name, stream=stream, dead_letters=stream + ":dead", batch=batch)
    records = await c.poll(block_ms=1000)
    print(json.dumps([r.request_id for r in records]), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def on_real_redis(url: str, scenario: Scenario) -> None:
    redis = aioredis.Redis.from_url(url)
    stream = unique_stream()
    try:
        await scenario(redis, stream)
    finally:
        await redis.delete(stream, stream + ":dead")
        await redis.aclose()


@pytest.mark.parametrize("scenario", SCENARIOS + REAL_REDIS_SCENARIOS, ids=lambda s: s.__name__)
def test_on_real_redis(redis_server: RedisServer, scenario: Scenario) -> None:
    asyncio.run(on_real_redis(redis_server.url, scenario))


def run_worker_until_it_polled(
    url: str, stream: str, name: str, batch: int
) -> tuple[subprocess.Popen[str], list[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, url, stream, name, str(batch)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 120)
    line = proc.stdout.readline() if ready else ""
    if not line:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the worker process printed nothing: {err[-2000:]}")
    return proc, json.loads(line)


@pytest.mark.parametrize("successor", ["other-name", "same-name"])
def test_entries_of_a_killed_consumer_are_taken_over_and_none_is_lost(
    redis_server: RedisServer, successor: str
) -> None:
    async def scenario(redis: aioredis.Redis, stream: str) -> None:
        ids = [await add(redis, stream, f"r{i}") for i in range(10)]
        proc, taken = await asyncio.to_thread(
            run_worker_until_it_polled, redis_server.url, stream, "doomed", 4
        )
        assert taken == ["r0", "r1", "r2", "r3"]
        assert await pending(redis, stream) == dict.fromkeys(ids[:4], ("doomed", 1))
        proc.send_signal(signal.SIGKILL)
        assert await asyncio.to_thread(proc.wait, 30) == -signal.SIGKILL
        await add(redis, stream, "r10")

        if successor == "same-name":  # restarted under its name: its own pending comes back at once
            c = consumer(redis, stream, "doomed")
            assert request_ids(await c.start()) == taken
        else:  # another worker: takes them over once they have been idle for claim_idle_ms
            c = consumer(redis, stream, "rescuer", claim_idle_ms=100)
            await asyncio.sleep(0.15)
        records = await c.poll()
        assert sorted(request_ids(c.fresh())) == sorted(f"r{i}" for i in range(11))
        assert request_ids(c.fresh()) == [f"r{i}" for i in range(11)]  # stream order
        held = await pending(redis, stream)
        assert {i: held[i] for i in ids[:4]} == dict.fromkeys(ids[:4], (c.name, 2))  # a second delivery
        if successor == "other-name":
            assert request_ids(records) == [f"r{i}" for i in range(11)]
            assert c.counts.reclaimed == 4

        assert await c.commit(c.fresh()) == 11
        assert await pending(redis, stream) == {}
        assert await dead_letters(redis, stream) == []
        assert request_ids(c.replay_buffer()) == [f"r{i}" for i in range(11)]  # every entry, once
        groups = await redis.xinfo_groups(stream)
        assert [(g["name"].decode(), g["pending"], g["lag"]) for g in groups] == [(keys.WORKER_GROUP, 0, 0)]

    asyncio.run(on_real_redis(redis_server.url, scenario))


def test_the_consumer_group_is_shared_with_the_gateway_default(redis_server: RedisServer) -> None:
    """`start()` on an existing group (BUSYGROUP) keeps it and its position."""

    async def scenario(redis: aioredis.Redis, stream: str) -> None:
        await redis.xgroup_create(stream, keys.WORKER_GROUP, id="0", mkstream=True)  # as the gateway does
        await add(redis, stream, "r0")
        c = StreamConsumer(redis, "w1", stream=stream, dead_letters=stream + ":dead")
        assert await c.start() == []
        assert request_ids(await c.poll()) == ["r0"]

    asyncio.run(on_real_redis(redis_server.url, scenario))
