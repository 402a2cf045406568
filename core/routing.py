"""Which adapter new requests are routed to, and the one way a version becomes current (`promote`).

Routing. The gateway learns of a move of the current pointer from a pub/sub notice on
`keys.ADAPTER_EVENTS` at once, and re-reads the pointer every `poll_s` anyway, in case a notice was missed
(pub/sub is fire-and-forget). While Redis is down it keeps routing to the last version it knew.

Promotion (the worker after its gate, an admin through `POST /v1/adapters/{version}/promote`): load the
version into vLLM under its own immutable name, check that the name answers a request, and only then move
the pointer. So no request is routed to a name vLLM does not have. A version older than the current one is a
rollback: the version it replaces is marked `rolled_back`.

Reconcile. A vLLM restart forgets runtime adapters. The follow loop checks every `poll_s` that the current
adapter is loaded and loads it again when it is not; a request that still meets vLLM's 404 first reloads it
and retries, so a client never sees it.

Reload-and-retry is written once, in `AdapterEngine.complete`: the gateway's answers, the worker's labeled
evaluations and the demo's evaluation all ask vLLM through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis
from PIL import Image
from redis.exceptions import RedisError

from core import keys
from core.engine import AdapterNotLoadedError, EngineClient, EngineUnavailableError
from core.registry import Registry, UnknownVersionError, VersionPrunedError
from core.wire import AdapterInfo, AdapterList, AdapterMove

log = logging.getLogger("ttrv.adapters")


MAX_ATTEMPTS = 3  # tries of one request that meets vLLM's 404 for its adapter name
T = TypeVar("T")


@dataclass(frozen=True)
class Route:
    version: int
    name: str  # the name vLLM serves it under
    path: str | None  # adapter folder (None for the base model)


def _check_image() -> bytes:
    """A small grey PNG: what `promote` asks a freshly loaded adapter about, to see that it answers."""
    out = io.BytesIO()
    Image.new("RGB", (56, 56), (128, 128, 128)).save(out, format="PNG")
    return out.getvalue()


class AdapterEngine:
    """vLLM addressed by route: answers on a version's name, loading the name again when vLLM forgot it
    (a restart, or another process unloaded it). `on_miss` is called on every 404 for a name (a metric)."""

    def __init__(self, engine: EngineClient, on_miss: Callable[[], None] = lambda: None):
        self.engine = engine
        self.on_miss = on_miss
        self.reloads = 0  # adapters loaded again because vLLM had forgotten them
        self._reload_lock = asyncio.Lock()

    async def reload(self, route: Route) -> None:
        """Load `route`'s adapter into vLLM again, unless it is loaded (or is the base model)."""
        if route.path is None:
            return
        async with self._reload_lock:
            if route.name in await self.engine.loaded_models():
                return  # another request reloaded it while this one waited for the lock
            log.warning("vLLM does not know %s: loading it again from %s", route.name, route.path)
            await self.engine.load_adapter(route.name, route.path)
            self.reloads += 1

    async def call(
        self,
        route: Route,
        request: Callable[[Route], Awaitable[T]],
        retarget: Callable[[Route], Awaitable[Route | None]] | None = None,
    ) -> tuple[T, Route]:
        """`request(route)` and the route that answered it. On vLLM's 404 for the name: `retarget` may name
        another route (the pointer moved meanwhile: answer with the new current version); otherwise the
        name is loaded again from its folder, and the request retried, `MAX_ATTEMPTS` times in all.

        Raises `AdapterNotLoadedError` when it still misses (or the base model's name is unknown); other
        errors of the request (`EngineUnavailableError`, `EngineRefusedError`) pass through.
        """
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return await request(route), route
            except AdapterNotLoadedError:
                self.on_miss()
                moved = await retarget(route) if retarget is not None else None
                if attempt == MAX_ATTEMPTS or (moved is None and route.path is None):
                    raise
                if moved is not None:
                    route = moved
                else:
                    await self.reload(route)
        raise AssertionError("unreachable")  # the loop returns or raises

    async def complete(
        self,
        route: Route,
        image: bytes,
        mime: str,
        question: str,
        *,
        retarget: Callable[[Route], Awaitable[Route | None]] | None = None,
        **sampling: Any,
    ) -> tuple[list[str], Route]:
        """The texts of `route`'s answers to one image and question (`EngineClient.complete`'s keyword
        arguments in `sampling`), through `call`."""

        async def ask(r: Route) -> list[str]:
            return await self.engine.complete(r.name, image, mime, question, **sampling)

        return await self.call(route, ask, retarget)


class AdapterRouter:
    def __init__(
        self,
        redis: aioredis.Redis,
        engine: EngineClient,
        base_name: str,
        poll_s: float,
        on_miss: Callable[[], None] = lambda: None,
    ):
        self.redis = redis
        self.registry = Registry(redis)
        self.engine = engine
        self.adapters = AdapterEngine(engine, on_miss)
        self.base_name = base_name
        self.poll_s = poll_s
        self.route = Route(0, base_name, None)

    @property
    def reloads(self) -> int:
        return self.adapters.reloads

    def name(self, version: int) -> str:
        return keys.adapter_name(version, self.base_name)

    async def route_to(self, version: int) -> Route:
        """The route of any version (not only the current one), its folder from the registry."""
        entry = await self.registry.get(version) if version else None
        path = None if entry is None or entry.get("pruned") else entry.get("path")
        return Route(version, self.name(version), None if path is None else str(path))

    async def complete(
        self, image: bytes, mime: str, question: str, **sampling: Any
    ) -> tuple[list[str], Route]:
        """Answers of the current version, following the pointer if it moves mid-request (see
        `AdapterEngine.complete`); `sampling` takes its keyword arguments (n, temperature, ...)."""
        return await self.adapters.complete(
            self.route, image, mime, question, retarget=self._moved, **sampling
        )

    async def call(
        self, request: Callable[[Route], Awaitable[T]], route: Route | None = None
    ) -> tuple[T, Route]:
        """`AdapterEngine.call` on `route`, or on the current version (following the pointer) by default."""
        if route is None:
            return await self.adapters.call(self.route, request, self._moved)
        return await self.adapters.call(route, request)

    async def _moved(self, route: Route) -> Route | None:
        latest = await self.refresh()
        return latest if latest != route else None

    async def reload(self, route: Route) -> None:
        await self.adapters.reload(route)

    async def refresh(self) -> Route:
        """Re-read the current pointer; keeps the last known route when Redis is unreachable."""
        try:
            current = await self.registry.current()
            entry = await self.registry.get(current) if current else None
        except RedisError:
            return self.route
        path = entry.get("path") if entry else None
        if current and path is None:
            log.error("current adapter v%d has no registry entry; routing to the base model", current)
            current = 0
        route = Route(current, self.name(current), path)
        if route != self.route:
            log.info("routing new requests to %s", route.name)
            self.route = route
        return route

    async def follow(self) -> None:
        """Background task: refresh on every pub/sub notice and at least every `poll_s`; reconcile."""
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(keys.ADAPTER_EVENTS)
                    while True:
                        await self.refresh()
                        await self.reconcile()
                        await pubsub.get_message(ignore_subscribe_messages=True, timeout=self.poll_s)
            except (RedisError, OSError):
                await asyncio.sleep(self.poll_s)

    async def reconcile(self) -> None:
        """Load the current adapter again if vLLM does not list it (it restarted); quiet while it is down."""
        route = self.route
        if route.path is None:
            return
        try:
            if route.name not in await self.engine.loaded_models():
                await self.reload(route)
        except EngineUnavailableError:
            pass

    async def listing(self, history: int = 20) -> AdapterList:
        versions = await self.registry.all()
        infos = [AdapterInfo.model_validate({**meta, "version": v}) for v, meta in sorted(versions.items())]
        moves = [AdapterMove.model_validate(m) for m in await self.registry.history(history)]
        return AdapterList(current=self.route.version, versions=infos, history=moves)

    async def promote(self, version: int, reason: str = "promoted by an admin") -> AdapterList:
        """Make `version` current (0 = base model): load it, check it answers, then move the pointer."""
        if version != 0:
            entry = await self.registry.get(version)
            if entry is None:
                raise UnknownVersionError(version)
            if entry.get("pruned"):
                raise VersionPrunedError(version)
            name = self.name(version)
            await self.engine.load_adapter(name, str(entry["path"]))
            if name not in await self.engine.loaded_models():
                raise AdapterNotLoadedError(name)
            # The first request on a name reads its files (vLLM loads lazily): do it here, not in a client's.
            await self.engine.complete(name, _check_image(), "image/png", "Answer.", max_tokens=1)
        current = await self.registry.current()
        if version == current:
            return await self.listing()
        older = version < current
        await self.registry.move(version, "rollback" if older else "promote", reason)
        if version:
            await self.registry.update(version, status="promoted")
        if older:
            await self.registry.update(current, status="rolled_back", rollback_reason=reason)
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
