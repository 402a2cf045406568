"""The adaptation worker's consumer of the request stream (`keys.REQUESTS`, group `keys.WORKER_GROUP`).

Delivery semantics: at least once, per stream entry.

- Taken. `start()` and `poll()` hand out records; each stays *pending* in the consumer group (in Redis: in
  this consumer's pending entries list, PEL) and in `pending_records` here until `commit(records)`.
- Acknowledged. `commit` XACKs exactly the entries given. Call it only after the round that used them was
  committed, i.e. saved as a new adapter version; an entry is never acknowledged before that, except the
  entries this module settles itself: duplicates (acked at once, not handed out) and dead letters.
- Crash. A worker that dies loses its in-memory state (pending set, replay buffer), not the entries: they
  stay in its PEL. Restarted under the *same* consumer name, `start()` re-reads its own PEL at once
  (XREADGROUP from id 0). Under any other name, `poll()` takes them over with XAUTOCLAIM once they have
  been idle longer than `claim_idle_ms` (the dead consumer's and those of any consumer that stopped
  polling for that long). No entry is lost: one is acknowledged only once it has reached one of four
  ends: committed by a caller, found a duplicate of a record pending here or recently committed here,
  copied to the dead-letter stream, or found deleted from the stream (the gateway trims only
  acknowledged entries). Until then it stays in some consumer's PEL and comes back after a crash.
- Redelivery. Redis counts deliveries per entry (XPENDING extended form, `times_delivered`): the first
  read is 1, and each XAUTOCLAIM and each re-read of one's own PEL adds 1. An entry delivered more than
  `max_deliveries` times (it keeps coming back, e.g. it crashes the worker) is not handed out again: it is
  XADDed to the dead-letter stream (`keys.DEAD_LETTERS`: the original fields plus `reason`, `deliveries`,
  `entry_id` and `consumer`) and XACKed in one MULTI/EXEC transaction (both happen or neither). A poison
  entry that kills the worker is therefore dropped after `max_deliveries` restarts, whatever the name. A
  malformed entry (`core.records.BadRecord`) is dead-lettered at its first delivery. An entry deleted
  from the stream while pending (it has no fields left) is acknowledged and dropped.
- Duplicates. An entry whose request id or content key (`RequestRecord.content_key`: same image, question
  and options) equals that of a record pending in this process or held in the replay buffer is XACKed at
  once and not handed out. The replay buffer is bounded, so an old record's twin can be taken again.
- Trained twice? A record may be trained on again after a crash (its round was never committed, so its
  entry comes back). Inside one version it is used once: a poll never hands out an entry this process
  already holds, the caller passes each record once per round, and dedupe guards the rest. Committing an
  entry twice is harmless (the second XACK counts 0; the record is not added to the replay buffer again).
- Long rounds. While a round runs, the entries it holds age; another worker may take them over after
  `claim_idle_ms`. `poll()` first resets the idle time of the entries this consumer still owns (XCLAIM
  JUSTID, which does not count as a delivery); a loop whose rounds can outlast `claim_idle_ms` should call
  `keepalive()` during the round. If an entry is taken over anyway, both workers may train on it, which
  at-least-once allows; whichever commits first acknowledges it.

The replay buffer keeps the `replay_size` most recently committed records for the next rounds, which
train ~2 epochs over recent data as the paper does. It lives in memory: after a restart it starts empty
(its records were already acknowledged and are not delivered again).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, cast

import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT

from core import keys
from core.records import BadRecord, RequestRecord, parse_record, stream_order, text

log = logging.getLogger("ttrv.consumer")

DEAD_LETTERS_MAXLEN = 100_000  # the dead-letter stream keeps about this many of the newest entries

Entry = tuple[bytes | str, Mapping[bytes, bytes]]

# Reset the idle time of the listed entries that are still in this consumer's PEL, atomically, without
# counting a delivery (JUSTID) and without taking back an entry another consumer has claimed meanwhile.
_KEEPALIVE_SCRIPT = """
local touched = 0
for i = 3, #ARGV do
  if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2]) == 1 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    touched = touched + 1
  end
end
return touched
"""


class Backlog(TypedDict):
    queue_length: int  # XLEN of the stream
    pending: int  # entries delivered to the group and not acknowledged (all consumers)
    lag: int | None  # entries not yet delivered to the group; None where Redis cannot tell


@dataclass
class ConsumerCounts:
    """What this consumer did since it was made (for logs and metrics)."""

    taken: int = 0  # records handed out (new, reclaimed or resumed)
    reclaimed: int = 0  # of those, taken over from another consumer with XAUTOCLAIM
    duplicates: int = 0  # entries acknowledged as duplicates, not handed out
    dead_lettered: int = 0
    gone: int = 0  # pending entries deleted from the stream before they were used
    committed: int = 0  # records acknowledged through `commit`


class StreamConsumer:
    """One named consumer in the worker's consumer group; see the module docstring for the semantics."""

    def __init__(
        self,
        redis: aioredis.Redis,
        consumer_name: str,
        *,
        max_deliveries: int = 5,
        claim_idle_ms: int = 60_000,
        replay_size: int = 512,
        batch: int = 256,
        stream: str = keys.REQUESTS,
        group: str = keys.WORKER_GROUP,
        dead_letters: str = keys.DEAD_LETTERS,
    ):
        if not consumer_name:
            raise ValueError("consumer_name is empty: give each worker process a stable, unique name")
        if max_deliveries < 1:
            raise ValueError(f"max_deliveries={max_deliveries}: must be at least 1 (the first delivery)")
        if claim_idle_ms < 0 or replay_size < 0 or batch < 1:
            raise ValueError(
                f"claim_idle_ms={claim_idle_ms}, replay_size={replay_size}, batch={batch}: "
                "claim_idle_ms and replay_size must be >= 0 and batch >= 1"
            )
        self.redis = redis
        self.name = consumer_name
        self.max_deliveries = max_deliveries
        self.claim_idle_ms = claim_idle_ms
        self.replay_size = replay_size
        self.batch = batch
        self.stream = stream
        self.group = group
        self.dead_letters = dead_letters
        self.counts = ConsumerCounts()
        self._started = False
        self._pending: dict[str, RequestRecord] = {}  # entry id -> record, taken and not committed
        self._replay: collections.deque[RequestRecord] = collections.deque()
        # request id / content key -> entry id, over pending and replay records (each key occurs once there)
        self._by_request: dict[str, str] = {}
        self._by_content: dict[str, str] = {}
        self._keepalive = redis.register_script(_KEEPALIVE_SCRIPT)

    async def start(self) -> list[RequestRecord]:
        """Create the group if missing (from id 0) and resume this consumer's own pending entries.

        Returns the resumed records (also in `pending_records`). `poll` calls it if it was not called;
        calling it again does nothing (a second re-read would count one more delivery of each entry).
        """
        if self._started:
            return []
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise
        entries: list[Entry] = []
        cursor: bytes | str = "0"
        while True:
            page = _entries(
                await self.redis.xreadgroup(self.group, self.name, {self.stream: cursor}, count=self.batch)
            )
            if not page:
                break
            entries.extend(page)
            cursor = page[-1][0]
        self._started = True
        resumed = await self._take(entries, recount=True)
        if resumed:
            log.info("consumer %s resumed %d pending record(s)", self.name, len(resumed))
        return resumed

    async def poll(self, block_ms: int = 0) -> list[RequestRecord]:
        """New records in stream order: first those reclaimed from idle consumers, then new entries.

        Waits up to `block_ms` for new entries when there is nothing else to return (0: do not wait;
        unlike Redis's `BLOCK 0`, never forever). The records stay pending until `commit`.
        """
        got = [] if self._started else await self.start()
        await self.keepalive()
        got += await self._reclaim()
        block = block_ms if block_ms > 0 and not got else None
        reply = await self.redis.xreadgroup(
            self.group, self.name, {self.stream: ">"}, count=self.batch, block=block
        )
        got += await self._take(_entries(reply), recount=False)
        return sorted(got, key=_order)

    @property
    def pending_records(self) -> list[RequestRecord]:
        """Records taken and not committed yet, in stream order."""
        return sorted(self._pending.values(), key=_order)

    def fresh(self) -> list[RequestRecord]:
        """Same as `pending_records`: the records no committed round has used yet."""
        return self.pending_records

    def replay_buffer(self) -> list[RequestRecord]:
        """The most recently committed records (at most `replay_size`), oldest first."""
        return list(self._replay)

    async def commit(self, records: Iterable[RequestRecord]) -> int:
        """Acknowledge exactly these records' entries and move them into the replay buffer.

        Call it once the round that used them is committed (saved as a new adapter version). Returns how
        many entries Redis acknowledged now; committing a record again acknowledges nothing and is harmless.
        """
        ids = list(dict.fromkeys(r.entry_id for r in records))
        if not ids:
            return 0
        acked = int(await self.redis.xack(self.stream, self.group, *ids))
        for entry_id in ids:
            record = self._pending.pop(entry_id, None)
            if record is None:
                continue
            self.counts.committed += 1
            self._replay.append(record)
            while len(self._replay) > self.replay_size:
                self._forget(self._replay.popleft())
        return acked

    async def keepalive(self) -> int:
        """Reset the idle time of held entries still owned here, so no one reclaims them; returns how many."""
        if not self._pending:
            return 0
        return int(await self._keepalive(keys=[self.stream], args=[self.group, self.name, *self._pending]))

    async def backlog(self) -> Backlog:
        """Counts for metrics: stream length, the group's pending entries and its lag (None if unknown)."""
        length = int(await self.redis.xlen(self.stream))
        try:
            groups: list[dict[str, Any]] = await self.redis.xinfo_groups(self.stream)
        except ResponseError:  # no such key: the stream does not exist yet
            groups = []
        group = next((g for g in groups if text(g["name"]) == self.group), None)
        if group is None:
            return {"queue_length": length, "pending": 0, "lag": None}
        lag = group.get("lag")
        return {
            "queue_length": length,
            "pending": int(group["pending"]),
            "lag": None if lag is None else int(lag),
        }

    async def _reclaim(self) -> list[RequestRecord]:
        """XAUTOCLAIM every entry idle longer than `claim_idle_ms`, whichever consumer held it."""
        entries: list[Entry] = []
        cursor: bytes | str = "0-0"
        while True:
            reply: list[Any] = await self.redis.xautoclaim(
                self.stream, self.group, self.name, self.claim_idle_ms, start_id=cursor, count=self.batch
            )
            cursor = reply[0]
            entries.extend(e for e in cast(list[Entry], reply[1]) if e[0] is not None)
            if len(reply) > 2 and reply[2]:  # Redis >= 7 drops deleted entries from the PEL and lists them
                self.counts.gone += len(reply[2])
                log.warning("%d pending entries were deleted from %s before use", len(reply[2]), self.stream)
            if text(cursor) == "0-0":
                break
        taken = await self._take(entries, recount=True)
        self.counts.reclaimed += len(taken)
        if taken:
            log.info("consumer %s reclaimed %d idle record(s)", self.name, len(taken))
        return taken

    async def _take(self, entries: Sequence[Entry], *, recount: bool) -> list[RequestRecord]:
        """Hold the usable entries; ack duplicates and deleted entries, dead-letter the rest, atomically.

        `recount`: the entries may have been delivered before (reclaimed or resumed), so their delivery
        counts are read; an entry read with ">" is at its first delivery.
        """
        entries = [e for e in entries if text(e[0]) not in self._pending]  # already held here: not again
        deliveries = await self._deliveries([text(e[0]) for e in entries]) if recount else {}
        acks: list[str] = []
        dead: list[tuple[str, Mapping[bytes, bytes], str, int]] = []
        taken: list[RequestRecord] = []
        for raw_id, fields in entries:
            entry_id = text(raw_id)
            count = deliveries.get(entry_id) if recount else 1
            if count is None:  # no longer in this consumer's PEL: acknowledged or claimed meanwhile
                continue
            if not fields:  # deleted from the stream while pending: nothing left to use
                acks.append(entry_id)
                self.counts.gone += 1
                continue
            if count > self.max_deliveries:
                reason = f"delivered {count} times, more than max_deliveries={self.max_deliveries}"
                dead.append((entry_id, fields, reason, count))
                continue
            try:
                record = parse_record(entry_id, fields)
            except BadRecord as err:
                dead.append((entry_id, fields, f"malformed: {err.problem}", count))
                continue
            if record.request_id in self._by_request or record.content_key in self._by_content:
                acks.append(entry_id)
                self.counts.duplicates += 1
                continue
            self._hold(record)
            taken.append(record)
        await self._settle(acks, dead)
        self.counts.taken += len(taken)
        return taken

    async def _deliveries(self, entry_ids: Sequence[str]) -> dict[str, int]:
        """Delivery count of each entry still in this consumer's PEL (XPENDING extended form)."""
        if not entry_ids:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for entry_id in entry_ids:
            pipe.xpending_range(self.stream, self.group, entry_id, entry_id, 1, consumername=self.name)
        counts: dict[str, int] = {}
        for rows in cast(list[list[dict[str, Any]]], await pipe.execute()):
            for row in rows:
                counts[text(row["message_id"])] = int(row["times_delivered"])
        return counts

    async def _settle(
        self, acks: Sequence[str], dead: Sequence[tuple[str, Mapping[bytes, bytes], str, int]]
    ) -> None:
        if not acks and not dead:
            return
        pipe = self.redis.pipeline(transaction=True)
        for entry_id, fields, reason, count in dead:
            letter: dict[FieldT, EncodableT] = dict(fields.items())
            extra = {"reason": reason, "deliveries": str(count), "entry_id": entry_id, "consumer": self.name}
            letter.update(extra)
            pipe.xadd(self.dead_letters, letter, maxlen=DEAD_LETTERS_MAXLEN, approximate=True)
            log.warning("dead-lettered stream entry %s: %s", entry_id, reason)
        pipe.xack(self.stream, self.group, *acks, *(d[0] for d in dead))
        await pipe.execute()
        self.counts.dead_lettered += len(dead)

    def _hold(self, record: RequestRecord) -> None:
        self._pending[record.entry_id] = record
        self._by_request[record.request_id] = record.entry_id
        self._by_content[record.content_key] = record.entry_id

    def _forget(self, record: RequestRecord) -> None:
        if self._by_request.get(record.request_id) == record.entry_id:
            del self._by_request[record.request_id]
        if self._by_content.get(record.content_key) == record.entry_id:
            del self._by_content[record.content_key]


def _entries(reply: Any) -> list[Entry]:
    """The entries of an XREADGROUP reply on one stream (redis-py's default RESP2 form); [] on a timeout."""
    if not reply:
        return []
    return [(entry_id, fields) for _, entries in reply for entry_id, fields in entries]


def _order(record: RequestRecord) -> tuple[int, int]:
    return stream_order(record.entry_id)
