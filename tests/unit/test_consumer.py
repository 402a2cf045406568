"""The worker's stream consumer: at-least-once delivery, reclaiming, dead letters, dedupe, replay buffer.

The scenarios take a Redis client and a stream name of their own, so the same ones run here on fakeredis and
in tests/integration/test_consumer_on_redis.py on a real redis-server (`SCENARIOS`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis
from redis.typing import EncodableT, FieldT

from adapter.consumer import StreamConsumer
from core import keys
from core.records import BadRecord, RequestRecord, parse_record
from core.wire import AnswerResponse
from server.queue import Record

Scenario = Callable[[aioredis.Redis, str], Coroutine[Any, Any, None]]


def unique_stream() -> str:
    return f"test:consumer:{uuid.uuid4().hex}"


def consumer(redis: aioredis.Redis, stream: str, name: str = "w1", **options: Any) -> StreamConsumer:
    return StreamConsumer(redis, name, stream=stream, dead_letters=stream + ":dead", **options)


def gateway_fields(
    request_id: str,
    *,
    image: str | None = None,
    question: str = "Which digit is shown?",
    options: list[str] | None = None,
) -> dict[str, str]:
    """The fields of an entry exactly as the gateway writes them (core/records.py `RequestRecord.fields`)."""
    response = AnswerResponse(
        id=request_id, answer="7", text="7", adapter_version=2, confidence=None, latency_ms=1.0
    )
    sha = image or f"sha-{request_id}"
    flat = Record(response, b"png", sha, question, options, "default", 1, time.time()).fields()
    return dict(zip(flat[::2], flat[1::2], strict=True))


async def xadd(redis: aioredis.Redis, stream: str, fields: Mapping[str, str]) -> str:
    entry: dict[FieldT, EncodableT] = dict(fields.items())
    return text(await redis.xadd(stream, entry))


async def add(redis: aioredis.Redis, stream: str, request_id: str, **content: Any) -> str:
    return await xadd(redis, stream, gateway_fields(request_id, **content))


async def pending(redis: aioredis.Redis, stream: str) -> dict[str, tuple[str, int]]:
    """Entry id -> (consumer, times delivered), for every entry pending in the group."""
    rows = await redis.xpending_range(stream, keys.WORKER_GROUP, "-", "+", 1000)
    return {text(r["message_id"]): (text(r["consumer"]), int(r["times_delivered"])) for r in rows}


async def idle_ms(redis: aioredis.Redis, stream: str) -> dict[str, int]:
    rows = await redis.xpending_range(stream, keys.WORKER_GROUP, "-", "+", 1000)
    return {text(r["message_id"]): int(r["time_since_delivered"]) for r in rows}


async def dead_letters(redis: aioredis.Redis, stream: str) -> list[dict[str, str]]:
    entries = await redis.xrange(stream + ":dead") or []
    return [{text(k): text(v) for k, v in (fields or {}).items()} for _, fields in entries]


def text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def request_ids(records: list[RequestRecord]) -> list[str]:
    return [r.request_id for r in records]


# --- scenarios (fakeredis here, a real redis-server in the integration test) -------------------------------


async def new_entries_stay_pending_until_commit(redis: aioredis.Redis, stream: str) -> None:
    ids = [await add(redis, stream, f"r{i}") for i in range(3)]
    c = consumer(redis, stream)
    records = await c.poll()
    assert [r.entry_id for r in records] == ids
    assert request_ids(records) == ["r0", "r1", "r2"]
    assert records[0].served_answer == "7"
    assert records[0].adapter_version == 2
    assert records[0].image_key == keys.image("sha-r0")
    assert set(await pending(redis, stream)) == set(ids)
    assert c.pending_records == records == c.fresh()
    assert await c.poll() == []  # nothing is handed out twice

    assert await c.commit(records[:2]) == 2  # acknowledges exactly these
    assert await pending(redis, stream) == {ids[2]: ("w1", 1)}
    assert c.fresh() == [records[2]]
    assert c.replay_buffer() == records[:2]

    assert await c.commit(records[:2]) == 0  # a second commit is harmless
    assert c.replay_buffer() == records[:2]
    assert await c.commit(records[2:]) == 1
    assert await pending(redis, stream) == {}
    assert c.fresh() == []
    assert c.counts.committed == 3


async def idle_entries_are_reclaimed_by_another_consumer(redis: aioredis.Redis, stream: str) -> None:
    for i in range(3):
        await add(redis, stream, f"r{i}")
    first = await consumer(redis, stream, "w1").poll()  # then w1 "crashes": it never commits
    assert await consumer(redis, stream, "w2", claim_idle_ms=60_000).poll() == []  # not idle long enough
    await asyncio.sleep(0.05)
    rescuer = consumer(redis, stream, "w3", claim_idle_ms=20)
    reclaimed = await rescuer.poll()
    assert request_ids(reclaimed) == request_ids(first)
    assert rescuer.counts.reclaimed == 3
    assert {owner for owner, _ in (await pending(redis, stream)).values()} == {"w3"}
    assert {n for _, n in (await pending(redis, stream)).values()} == {2}
    await rescuer.commit(reclaimed)
    assert await pending(redis, stream) == {}


async def entries_delivered_too_often_are_dead_lettered(redis: aioredis.Redis, stream: str) -> None:
    entry_id = await add(redis, stream, "poison")
    assert len(await consumer(redis, stream, "w0", max_deliveries=3).poll()) == 1  # delivery 1
    for n in (2, 3):  # each reclaim by a fresh consumer (the last one crashed) is one more delivery
        got = await consumer(redis, stream, f"w{n}", max_deliveries=3, claim_idle_ms=0).poll()
        assert request_ids(got) == ["poison"]
        assert await pending(redis, stream) == {entry_id: (f"w{n}", n)}
    last = consumer(redis, stream, "w4", max_deliveries=3, claim_idle_ms=0)
    assert await last.poll() == []  # the 4th delivery exceeds max_deliveries: dead-lettered, acked
    assert await pending(redis, stream) == {}
    [letter] = await dead_letters(redis, stream)
    assert (letter["id"], letter["question"]) == ("poison", "Which digit is shown?")  # the original fields
    assert (letter["deliveries"], letter["entry_id"], letter["consumer"]) == ("4", entry_id, "w4")
    assert "max_deliveries=3" in letter["reason"]
    assert last.counts.dead_lettered == 1


async def malformed_entries_are_dead_lettered_at_once(redis: aioredis.Redis, stream: str) -> None:
    no_fields = await xadd(redis, stream, {"id": "no-fields"})
    good = await add(redis, stream, "good")
    bad_options = await xadd(redis, stream, {**gateway_fields("bad-options"), "options": "{not json"})
    c = consumer(redis, stream)
    assert request_ids(await c.poll()) == ["good"]
    assert await pending(redis, stream) == {good: ("w1", 1)}
    letters = await dead_letters(redis, stream)
    assert [x["entry_id"] for x in letters] == [no_fields, bad_options]
    assert letters[0]["reason"].startswith("malformed: missing field(s) adapter_version, answer")
    assert letters[1]["reason"] == "malformed: options '{not json' is not JSON"
    assert (letters[1]["id"], letters[1]["deliveries"]) == ("bad-options", "1")
    assert c.counts.dead_lettered == 2


async def duplicates_are_acknowledged_not_returned(redis: aioredis.Redis, stream: str) -> None:
    await add(redis, stream, "r0", image="a", options=["cat", "dog"])
    await add(redis, stream, "r0", image="b")  # the same request id again
    await add(redis, stream, "r1", image="a", options=["cat", "dog"])  # the same image and question
    await add(redis, stream, "r2", image="a", options=["dog", "cat"])  # other options: other content
    await add(redis, stream, "r3", image="a", question="How many?", options=["cat", "dog"])
    c = consumer(redis, stream)
    records = await c.poll()
    assert request_ids(records) == ["r0", "r2", "r3"]
    assert c.counts.duplicates == 2
    assert len(await pending(redis, stream)) == 3  # the duplicates were acknowledged at once
    await c.commit(records)
    # Records in the replay buffer still count: the same content again is a duplicate.
    await add(redis, stream, "r4", image="a", options=["cat", "dog"])
    await add(redis, stream, "r2")
    assert await c.poll() == []
    assert c.counts.duplicates == 4
    assert await pending(redis, stream) == {}


async def a_restarted_consumer_resumes_its_own_pending(redis: aioredis.Redis, stream: str) -> None:
    ids = [await add(redis, stream, f"r{i}") for i in range(2)]
    before = await consumer(redis, stream, "w1").poll()  # then the process dies, uncommitted
    new = await add(redis, stream, "r2")
    again = consumer(redis, stream, "w1")  # same name, long claim_idle_ms: no waiting for the idle time
    resumed = await again.start()
    assert resumed == before
    assert await again.start() == []  # once only
    assert await pending(redis, stream) == {ids[0]: ("w1", 2), ids[1]: ("w1", 2)}  # a re-read counts
    assert request_ids(await again.poll()) == ["r2"]
    assert [r.entry_id for r in again.fresh()] == [*ids, new]
    await again.commit(again.fresh())
    assert await pending(redis, stream) == {}


async def poll_starts_the_consumer_and_returns_resumed_records(redis: aioredis.Redis, stream: str) -> None:
    await add(redis, stream, "r0")
    await consumer(redis, stream, "w1").poll()
    await add(redis, stream, "r1")
    assert request_ids(await consumer(redis, stream, "w1").poll()) == ["r0", "r1"]


async def an_entry_deleted_while_pending_is_dropped(redis: aioredis.Redis, stream: str) -> None:
    ids = [await add(redis, stream, f"r{i}") for i in range(4)]
    await consumer(redis, stream, "w1").poll()
    await redis.xdel(stream, ids[0], ids[2])
    resumed = consumer(redis, stream, "w1")  # own pending: the deleted entry comes back without fields
    assert request_ids(await resumed.start()) == ["r1", "r3"]
    assert resumed.counts.gone == 2
    assert set(await pending(redis, stream)) == {ids[1], ids[3]}
    await redis.xdel(stream, ids[1])
    rescuer = consumer(redis, stream, "w2", claim_idle_ms=0)  # XAUTOCLAIM lists deleted entries apart
    assert request_ids(await rescuer.poll()) == ["r3"]
    assert rescuer.counts.gone == 1
    assert set(await pending(redis, stream)) == {ids[3]}


async def held_entries_are_not_handed_out_twice(redis: aioredis.Redis, stream: str) -> None:
    for i in range(2):
        await add(redis, stream, f"r{i}")
    c = consumer(redis, stream, claim_idle_ms=0)  # its own entries are always "idle" to XAUTOCLAIM
    assert len(await c.poll()) == 2
    assert await c.poll() == []
    assert len(c.fresh()) == 2


async def keepalive_resets_idle_time_of_owned_entries_only(redis: aioredis.Redis, stream: str) -> None:
    ids = [await add(redis, stream, f"r{i}") for i in range(2)]
    c = consumer(redis, stream)
    await c.poll()
    await asyncio.sleep(0.12)
    assert min((await idle_ms(redis, stream)).values()) >= 100
    # Another consumer takes the second entry over; keepalive must not take it back.
    await redis.xclaim(stream, keys.WORKER_GROUP, "w2", 0, [ids[1]], justid=True)
    assert await c.keepalive() == 1
    assert (await idle_ms(redis, stream))[ids[0]] < 100
    assert await pending(redis, stream) == {ids[0]: ("w1", 1), ids[1]: ("w2", 1)}  # no delivery counted


async def poll_waits_for_new_entries_up_to_block_ms(redis: aioredis.Redis, stream: str) -> None:
    c = consumer(redis, stream)
    started = time.monotonic()
    assert await c.poll(block_ms=0) == []  # 0: does not wait (not Redis's "forever")
    assert await c.poll(block_ms=50) == []
    assert time.monotonic() - started >= 0.04

    async def later() -> None:
        await asyncio.sleep(0.05)
        await add(redis, stream, "late")

    task = asyncio.create_task(later())
    assert request_ids(await c.poll(block_ms=5_000)) == ["late"]
    await task


async def backlog_counts_length_pending_and_lag(redis: aioredis.Redis, stream: str) -> None:
    c = consumer(redis, stream, batch=2)
    assert await c.backlog() == {"queue_length": 0, "pending": 0, "lag": None}  # no stream, no group yet
    for i in range(5):
        await add(redis, stream, f"r{i}")
    records = await c.poll()
    assert len(records) == 2
    assert await c.backlog() == {"queue_length": 5, "pending": 2, "lag": 3}
    await c.commit(records)
    assert await c.backlog() == {"queue_length": 5, "pending": 0, "lag": 3}


SCENARIOS: tuple[Scenario, ...] = (
    new_entries_stay_pending_until_commit,
    idle_entries_are_reclaimed_by_another_consumer,
    entries_delivered_too_often_are_dead_lettered,
    malformed_entries_are_dead_lettered_at_once,
    duplicates_are_acknowledged_not_returned,
    a_restarted_consumer_resumes_its_own_pending,
    poll_starts_the_consumer_and_returns_resumed_records,
    an_entry_deleted_while_pending_is_dropped,
    held_entries_are_not_handed_out_twice,
    keepalive_resets_idle_time_of_owned_entries_only,
    backlog_counts_length_pending_and_lag,
)
# fakeredis (2.40) answers XREADGROUP ... BLOCK at once instead of waiting: checked on the real server only.
REAL_REDIS_SCENARIOS: tuple[Scenario, ...] = (poll_waits_for_new_entries_up_to_block_ms,)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_on_fakeredis(scenario: Scenario) -> None:
    asyncio.run(scenario(fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()), unique_stream()))


# --- fakeredis only ----------------------------------------------------------------------------------------


def test_replay_buffer_keeps_the_newest_committed_records_and_its_window_bounds_dedupe() -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        stream = unique_stream()
        c = consumer(redis, stream, replay_size=3)
        for i in range(5):
            await add(redis, stream, f"r{i}", image=f"img{i}")
        for record in await c.poll():
            await c.commit([record])
        assert request_ids(c.replay_buffer()) == ["r2", "r3", "r4"]
        # r0 left the buffer: the same content comes in again; r4 is still there: a duplicate.
        await add(redis, stream, "r0-again", image="img0")
        await add(redis, stream, "r4-again", image="img4")
        assert request_ids(await c.poll()) == ["r0-again"]
        assert c.counts.duplicates == 1

    asyncio.run(scenario())


def test_constructor_rejects_settings_that_cannot_work() -> None:
    redis = fakeredis.FakeAsyncRedis()
    with pytest.raises(ValueError, match="max_deliveries=0"):
        StreamConsumer(redis, "w1", max_deliveries=0)
    with pytest.raises(ValueError, match="batch=0"):
        StreamConsumer(redis, "w1", batch=0)
    with pytest.raises(ValueError, match="consumer_name is empty"):
        StreamConsumer(redis, "")


def test_default_keys_are_the_request_stream_and_its_dead_letters() -> None:
    c = StreamConsumer(fakeredis.FakeAsyncRedis(), "w1")
    assert (c.stream, c.group, c.dead_letters) == (keys.REQUESTS, keys.WORKER_GROUP, keys.DEAD_LETTERS)
    assert keys.DEAD_LETTERS == "ttrv:requests:dead"


# --- records ------------------------------------------------------------------------------------------------


def test_record_round_trips_the_gateway_fields() -> None:
    fields = gateway_fields("r1", image="abc", options=["cat", "dog"])
    raw = {k.encode(): v.encode() for k, v in fields.items()}
    record = parse_record(b"17-3", raw)
    assert record == RequestRecord(
        entry_id="17-3",
        request_id="r1",
        image_key=keys.image("abc"),
        question="Which digit is shown?",
        options=["cat", "dog"],
        stream="default",
        served_answer="7",
        adapter_version=2,
        ts=record.ts,
        mime="image/png",
        text="7",
        samples=1,
        confidence=None,
    )
    assert record.ts == pytest.approx(time.time(), abs=60)
    assert record.dedupe_key == "r1"
    assert hash(record) == hash(parse_record("17-3", fields))  # hashable although options is a list
    assert parse_record("1-0", {**fields, "options": ""}).options is None
    assert parse_record("1-0", {**fields, "options": "[]"}).options is None


def test_content_key_is_image_question_and_options() -> None:
    base = parse_record("1-0", gateway_fields("a", image="img", options=["x"]))
    assert (
        base.content_key == parse_record("2-0", gateway_fields("b", image="img", options=["x"])).content_key
    )
    for other in (
        gateway_fields("a", image="img2", options=["x"]),
        gateway_fields("a", image="img", options=["y"]),
        gateway_fields("a", image="img", question="Other?", options=["x"]),
        gateway_fields("a", image="img"),
    ):
        assert parse_record("3-0", other).content_key != base.content_key


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"adapter_version": "v3"}, "adapter_version 'v3' is not an integer"),
        ({"adapter_version": "-1"}, "adapter_version -1 is negative"),
        ({"ts": "soon"}, "ts 'soon' is not a number"),
        ({"ts": "nan"}, "ts 'nan' is not a finite number"),
        ({"options": '{"a": 1}'}, "is not a JSON list of strings"),
        ({"options": "[1, 2]"}, "is not a JSON list of strings"),
        ({"id": ""}, "field 'id' is empty"),
        ({"image": " "}, "field 'image' is empty"),
    ],
)
def test_malformed_fields_raise_bad_record(change: dict[str, str], message: str) -> None:
    with pytest.raises(BadRecord, match=message) as caught:
        parse_record("5-0", {**gateway_fields("r"), **change})
    assert caught.value.entry_id == "5-0"
    assert "stream entry 5-0 is malformed" in str(caught.value)


def test_non_utf8_field_raises_bad_record() -> None:
    raw = {k.encode(): v.encode() for k, v in gateway_fields("r").items()}
    raw[b"question"] = b"\xff\xfe"
    with pytest.raises(BadRecord, match="not UTF-8"):
        parse_record(b"6-0", raw)
