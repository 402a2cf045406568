"""Which adapter new requests are routed to, read from the registry in Redis and kept in memory.

The gateway learns of a promotion from a pub/sub notice on `keys.ADAPTER_EVENTS` at once, and re-reads the
current pointer every `adapter_poll_s` anyway, in case a notice was missed (pub/sub is fire-and-forget).
While Redis is down it keeps routing to the last version it knew.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from server import keys
from server.engine import AdapterNotLoadedError, EngineClient
from server.errors import APIError
from server.protocol import AdapterInfo, AdapterList

log = logging.getLogger("ttrv.adapters")


@dataclass(frozen=True)
class Route:
    version: int
    name: str  # the name vLLM serves it under
    path: str | None  # adapter folder (None for the base model)


class AdapterRouter:
    def __init__(self, redis: aioredis.Redis, engine: EngineClient, base_name: str, poll_s: float):
        self.redis = redis
        self.engine = engine
        self.base_name = base_name
        self.poll_s = poll_s
        self.route = Route(0, base_name, None)
        self._reload_lock = asyncio.Lock()

    async def versions(self) -> dict[int, dict[str, Any]]:
        raw = await self.redis.hgetall(keys.ADAPTER_VERSIONS)
        return {int(k): json.loads(v) for k, v in raw.items()}

    async def refresh(self) -> Route:
        """Re-read the current pointer; keeps the last known route when Redis is unreachable."""
        try:
            current = int(await self.redis.get(keys.ADAPTER_CURRENT) or 0)
            meta = await self.redis.hget(keys.ADAPTER_VERSIONS, str(current)) if current else None
        except RedisError:
            return self.route
        path = json.loads(meta).get("path") if meta else None
        if current and path is None:
            log.error("current adapter v%d has no registry entry; routing to the base model", current)
            current = 0
        route = Route(current, keys.adapter_name(current, self.base_name), path)
        if route != self.route:
            log.info("routing new requests to %s", route.name)
            self.route = route
        return route

    async def follow(self) -> None:
        """Background task: refresh on every pub/sub notice, and at least every `poll_s`."""
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(keys.ADAPTER_EVENTS)
                    while True:
                        await self.refresh()
                        await pubsub.get_message(ignore_subscribe_messages=True, timeout=self.poll_s)
            except (RedisError, OSError):
                await asyncio.sleep(self.poll_s)

    async def reload(self, route: Route) -> None:
        """Load `route`'s adapter into vLLM again (after a vLLM restart forgot it)."""
        if route.path is None:
            return
        async with self._reload_lock:
            log.warning("vLLM does not know %s: loading it again from %s", route.name, route.path)
            await self.engine.load_adapter(route.name, route.path)

    async def listing(self) -> AdapterList:
        versions = await self.versions()
        infos = [AdapterInfo.model_validate({**meta, "version": v}) for v, meta in sorted(versions.items())]
        return AdapterList(current=self.route.version, versions=infos)

    async def promote(self, version: int) -> AdapterList:
        """Make `version` current (0 = base model): load it into vLLM first, then move the pointer."""
        if version != 0:
            meta = await self.redis.hget(keys.ADAPTER_VERSIONS, str(version))
            if meta is None:
                raise APIError(
                    404, f"no adapter version {version}; GET /v1/adapters lists them", param="version"
                )
            path = json.loads(meta).get("path")
            name = keys.adapter_name(version, self.base_name)
            await self.engine.load_adapter(name, path)
            if name not in await self.engine.loaded_models():
                raise AdapterNotLoadedError(name)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.ADAPTER_CURRENT, version)
            pipe.publish(keys.ADAPTER_EVENTS, str(version))
            await pipe.execute()
        await self.refresh()
        return await self.listing()


@contextlib.asynccontextmanager
async def following(router: AdapterRouter) -> Any:
    task = asyncio.create_task(router.follow())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
