"""Adapter versions and adaptation control: list (public), promote/rollback and pause/resume (admin)."""

from __future__ import annotations

from fastapi import APIRouter
from redis.exceptions import RedisError

from core import keys
from core.engine import AdapterNotLoadedError, EngineUnavailableError
from core.registry import UnknownVersionError, VersionPrunedError
from core.wire import ERROR_RESPONSES, AdaptationState, AdapterList
from server.deps import AdminDep, ClientDep, GatewayDep
from server.errors import APIError

router = APIRouter()


def _unavailable(what: str, retry_after_s: int) -> APIError:
    return APIError(503, f"{what} is unavailable; retry after a moment", f"{what.lower()}_unavailable",
                    retry_after_s=retry_after_s)  # fmt: skip


@router.get("/v1/adapters", response_model=AdapterList, responses=ERROR_RESPONSES, summary="Adapter versions")
async def list_adapters(gateway: GatewayDep, client: ClientDep) -> AdapterList:
    try:
        return await gateway.router.listing()
    except RedisError:
        raise _unavailable("Redis", gateway.settings.retry_after_s) from None


@router.post(
    "/v1/adapters/{version}/promote",
    response_model=AdapterList,
    responses=ERROR_RESPONSES,
    summary="Route new requests to a version (admin); an older one is a rollback, 0 is the base model",
)
async def promote(version: int, gateway: GatewayDep, _: AdminDep) -> AdapterList:
    if version < 0:
        raise APIError(422, "version must be 0 (base model) or a positive version", param="version")
    try:
        return await gateway.router.promote(version)
    except RedisError:
        raise _unavailable("Redis", gateway.settings.retry_after_s) from None
    except (EngineUnavailableError, AdapterNotLoadedError):
        raise _unavailable("Engine", gateway.settings.retry_after_s) from None
    except UnknownVersionError as err:
        raise APIError(404, str(err), param="version") from None
    except VersionPrunedError as err:
        raise APIError(409, str(err), "conflict", param="version") from None


async def _set_paused(gateway: GatewayDep, paused: bool) -> AdaptationState:
    try:
        if paused:
            await gateway.redis.set(keys.ADAPTATION_PAUSED, "1")
        else:
            await gateway.redis.delete(keys.ADAPTATION_PAUSED)
    except RedisError:
        raise _unavailable("Redis", gateway.settings.retry_after_s) from None
    return AdaptationState(paused=paused)


@router.post(
    "/v1/adaptation/pause", response_model=AdaptationState, responses=ERROR_RESPONSES, summary="Pause"
)
async def pause(gateway: GatewayDep, _: AdminDep) -> AdaptationState:
    return await _set_paused(gateway, True)


@router.post(
    "/v1/adaptation/resume", response_model=AdaptationState, responses=ERROR_RESPONSES, summary="Resume"
)
async def resume(gateway: GatewayDep, _: AdminDep) -> AdaptationState:
    return await _set_paused(gateway, False)
