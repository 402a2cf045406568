"""The adapter registry in Redis: every version with its status, one current pointer, a history of moves.

Keys (all in `server/keys.py`):
- `ADAPTER_VERSIONS`, a hash version -> JSON entry: `path`, `status`, `parent`, `created_at`, the round's
  metadata, the gate's `reasons` and `metrics`, a timestamp per status change (`promoted_at`, ...), and
  `pruned` once retention deleted its folder;
- `ADAPTER_CURRENT`, the version new requests are routed to (0 = base model);
- `ADAPTER_HISTORY`, a stream of pointer moves `{version, previous, kind, reason, ts}`, kind `promote` or
  `rollback`: what a rollback goes back to, what the worker counts rollbacks from, what the demo's plot marks;
- `ADAPTER_EVENTS`, a pub/sub channel: the new current version, sent with every move.

Statuses: `candidate` (saved, being gated), `promoted` (passed the gate, or promoted by an admin; it stays
`promoted` when a newer version replaces it), `rejected` (failed the gate, kept for inspection),
`rolled_back` (was current until a rollback moved the pointer away from it).

Writers: the worker writes entries; the gateway's admin routes and the worker move the pointer. An entry
update is a read-modify-write of one hash field; the two writers never update the same field of one
version at the same moment in normal operation (the worker gates a candidate nobody else knows of yet).
This module imports no torch: the gateway uses it too.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any, Literal

import redis.asyncio as aioredis

from core import keys
from core.records import entries

Status = Literal["candidate", "promoted", "rejected", "rolled_back"]
MoveKind = Literal["promote", "rollback"]
HISTORY_MAXLEN = 10_000


class UnknownVersionError(LookupError):
    """No registry entry for this version."""

    def __init__(self, version: int):
        self.version = version
        super().__init__(f"no adapter version {version}; GET /v1/adapters (or `ttrv adapters`) lists them")


class VersionPrunedError(Exception):
    """The version's folder was deleted by retention: it can no longer be loaded."""

    def __init__(self, version: int):
        self.version = version
        super().__init__(
            f"adapter v{version}'s files were deleted by retention; promote a version that is still kept"
        )


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Registry:
    def __init__(self, redis: aioredis.Redis):
        self.redis = redis

    async def get(self, version: int) -> dict[str, Any] | None:
        raw = await self.redis.hget(keys.ADAPTER_VERSIONS, str(version))
        return None if raw is None else dict(json.loads(raw))

    async def all(self) -> dict[int, dict[str, Any]]:
        raw = await self.redis.hgetall(keys.ADAPTER_VERSIONS)
        return {int(k): json.loads(v) for k, v in raw.items()}

    async def register(self, version: int, path: str, metadata: dict[str, Any]) -> None:
        """A new candidate: saved, not yet gated, not routed to."""
        entry = {"created_at": now_iso(), **metadata, "path": path, "status": "candidate", "version": version}
        await self.redis.hset(keys.ADAPTER_VERSIONS, str(version), json.dumps(entry))

    async def update(self, version: int, **fields: Any) -> dict[str, Any]:
        """Merge `fields` into the entry; a new `status` also stamps `<status>_at`."""
        entry = await self.get(version) or {"version": version}
        if "metrics" in fields:
            fields["metrics"] = {**entry.get("metrics", {}), **fields["metrics"]}
        if "status" in fields:
            fields[f"{fields['status']}_at"] = now_iso()
        entry.update(fields)
        await self.redis.hset(keys.ADAPTER_VERSIONS, str(version), json.dumps(entry))
        return entry

    async def current(self) -> int:
        return int(await self.redis.get(keys.ADAPTER_CURRENT) or 0)

    async def move(self, version: int, kind: MoveKind, reason: str) -> int:
        """Point new requests at `version`, record the move, and notify gateways. Returns the previous one.

        Callers load the version into vLLM first: the pointer never names an adapter the engine lacks.
        """
        previous = await self.current()
        move = {"version": version, "previous": previous, "kind": kind, "reason": reason, "ts": time.time()}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.ADAPTER_CURRENT, version)
            pipe.xadd(keys.ADAPTER_HISTORY, {k: str(v) for k, v in move.items()}, maxlen=HISTORY_MAXLEN)
            pipe.publish(keys.ADAPTER_EVENTS, str(version))
            await pipe.execute()
        return previous

    async def history(self, count: int = 100) -> list[dict[str, Any]]:
        """The latest pointer moves, oldest first, each with its stream id as `id`."""
        rows = entries(await self.redis.xrevrange(keys.ADAPTER_HISTORY, count=count))
        return [{"id": entry_id, **fields} for entry_id, fields in reversed(rows)]

    async def predecessor(self, version: int) -> int | None:
        """The version that was current when `version` was last promoted: where a rollback goes back to."""
        for move in reversed(await self.history(1000)):
            if move["kind"] == "promote" and int(move["version"]) == version:
                return int(move["previous"])
        return None
