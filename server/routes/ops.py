"""Operations: liveness, readiness per component, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from core.engine import EngineUnavailableError
from core.wire import ComponentState, ReadyResponse
from server.deps import GatewayDep

router = APIRouter()


@router.get("/health", summary="Liveness: the process answers")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", response_model=ReadyResponse, summary="Readiness: Redis, vLLM and the current adapter")
async def ready(gateway: GatewayDep) -> JSONResponse:
    components: dict[str, ComponentState] = {}
    try:
        await gateway.redis.ping()
        components["redis"] = ComponentState(ok=True)
    except RedisError as err:
        components["redis"] = ComponentState(ok=False, detail=f"unreachable: {type(err).__name__}")
    route = gateway.router.route
    try:
        loaded = await gateway.engine.loaded_models()
        components["vllm"] = ComponentState(ok=True)
        components["adapter"] = ComponentState(
            ok=route.name in loaded,
            detail=f"{route.name} {'loaded' if route.name in loaded else 'not loaded'}",
        )
    except EngineUnavailableError as err:
        components["vllm"] = ComponentState(ok=False, detail=str(err))
        components["adapter"] = ComponentState(ok=False, detail="engine unavailable")
    body = ReadyResponse(
        ready=all(c.ok for c in components.values()), components=components, adapter_version=route.version
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@router.get("/metrics", summary="Prometheus metrics of this gateway")
async def metrics(gateway: GatewayDep) -> Response:
    gateway.metrics.served_version.set(gateway.router.route.version)
    return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)
