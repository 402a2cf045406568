"""Resources built once in the app's lifespan, reached by routes through `Annotated` dependencies.

The dependencies are `async def` although they do no I/O: FastAPI runs plain `def` dependencies in a
thread pool, and two thread hops per request are measurable next to a 25 ms engine call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, Request

from core.answers import AnswerExtractor
from core.engine import EngineClient
from core.routing import AdapterRouter
from server.auth import check_admin, check_api_key
from server.limits import InFlight, RateLimiter
from server.metrics import GatewayMetrics
from server.queue import RecordLog
from server.settings import GatewaySettings


@dataclass
class Gateway:
    settings: GatewaySettings
    redis: aioredis.Redis
    engine: EngineClient
    router: AdapterRouter
    records: RecordLog
    metrics: GatewayMetrics
    limiter: RateLimiter
    in_flight: InFlight
    extract: AnswerExtractor  # what counts as the same answer (TTRV_ANSWER_EXTRACTOR)


async def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


async def client_key(request: Request, gateway: GatewayDep) -> str:
    """Authenticate a public route; the key (or the client address) is what rate limits count by."""
    s = gateway.settings
    key = check_api_key(request, s.api_keys, s.admin_token)
    who = key or (request.client.host if request.client else "unknown")
    gateway.limiter.take(who)
    return who


async def admin(request: Request, gateway: GatewayDep) -> None:
    check_admin(request, gateway.settings.admin_token, gateway.settings.api_keys)


ClientDep = Annotated[str, Depends(client_key)]
AdminDep = Annotated[None, Depends(admin)]
