"""The gateway's app factory: resources are built in the lifespan and reached through `server.deps`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from redis.exceptions import RedisError

from core.answers import load_extractor
from core.engine import EngineClient
from core.logs import configure_logging
from core.routing import AdapterRouter, following
from server.chat.protocol import ChatRequest
from server.deps import Gateway
from server.errors import install_error_handlers
from server.limits import InFlight, RateLimiter
from server.metrics import GatewayMetrics
from server.middleware import MetricsMiddleware, RequestIdMiddleware
from server.queue import RecordLog
from server.routes import adapters, answer, chat, feedback, ops
from server.settings import GatewaySettings


def build_gateway(
    settings: GatewaySettings,
    metrics: GatewayMetrics,
    redis: aioredis.Redis | None = None,
    engine: EngineClient | None = None,
) -> Gateway:
    """The gateway's resources; tests pass a fake `redis` and `engine`, production builds real clients."""
    if redis is None:
        redis = aioredis.Redis.from_url(settings.redis_url, socket_timeout=2.0, socket_connect_timeout=1.0)
    if engine is None:
        engine = EngineClient(
            settings.vllm_url, settings.engine_timeout_s, max_connections=settings.max_in_flight
        )
    return Gateway(
        settings=settings,
        redis=redis,
        engine=engine,
        router=AdapterRouter(
            redis, engine, settings.base_model_name, settings.adapter_poll_s, metrics.adapter_misses.inc
        ),
        records=RecordLog(redis, metrics, settings.image_ttl_s, settings.stream_maxlen, settings.buffer_max),
        metrics=metrics,
        limiter=RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst, settings.retry_after_s),
        in_flight=InFlight(settings.max_in_flight, settings.retry_after_s),
        extract=load_extractor(settings.answer_extractor),
    )


def document_models(app: FastAPI, models: list[type[BaseModel]]) -> None:
    """Add request models that routes validate themselves (to answer 400, not 422) to the OpenAPI document,
    so `/docs` shows them and routes can refer to `#/components/schemas/<Model>`."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema


def create_app(
    settings: GatewaySettings | None = None,
    *,
    redis: aioredis.Redis | None = None,
    engine: EngineClient | None = None,
) -> FastAPI:
    settings = settings or GatewaySettings()
    configure_logging(settings.log_json)
    metrics = GatewayMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gateway = build_gateway(settings, metrics, redis, engine)
        app.state.gateway = gateway
        # Redis may be down at start: the gateway still serves answers and buffers records.
        with contextlib.suppress(RedisError, OSError):
            await gateway.records.ensure_group()
        await gateway.router.refresh()
        flusher = asyncio.create_task(gateway.records.flush_forever())
        try:
            async with following(gateway.router):
                yield
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await gateway.engine.aclose()
            await gateway.redis.aclose()

    app = FastAPI(
        title="ttrv-server",
        summary="Answers image questions with vLLM and adapts the model to the live stream with TTRV.",
        version="0.1.0",
        lifespan=lifespan,
    )
    document_models(app, [ChatRequest])
    install_error_handlers(app)
    for module in (answer, chat, feedback, adapters, ops):
        app.include_router(module.router)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
