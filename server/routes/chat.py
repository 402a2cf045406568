"""The OpenAI-compatible routes: `POST /v1/chat/completions`, `GET /v1/models`, `GET /v1/models/{model}`.

Thin: the body is read with a cap and validated here; serving is in `server/chat/`. Errors use the one
envelope, which is OpenAI's, with the statuses its SDK maps to exception classes (400 BadRequestError,
401 AuthenticationError, 404 NotFoundError, 429 RateLimitError, 503 InternalServerError).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from pydantic import ValidationError

from core.wire import ERROR_RESPONSES
from server.bodies import read_capped
from server.chat import serving
from server.chat.models import model_list, resolve
from server.chat.protocol import ChatRequest, ModelCard, ModelList
from server.deps import ClientDep, GatewayDep
from server.errors import APIError

router = APIRouter()
MAX_IMAGES = 8  # bounds the body: at most this many images of the byte limit, base64-encoded


def parse(raw: bytes) -> ChatRequest:
    """The request, or 400 naming the first field that is wrong (OpenAI answers 400, not 422, here)."""
    try:
        return ChatRequest.model_validate_json(raw)
    except ValidationError as err:
        first = err.errors()[0]
        if first["type"] == "json_invalid":
            raise APIError(400, "request body is not valid JSON") from None
        param = ".".join(str(p) for p in first["loc"]) or None
        if first["type"] == "extra_forbidden":
            message = f"unsupported parameter {param!r}; see /docs for the parameters this server takes"
        else:
            message = f"{param or 'the request body'}: {first['msg']}"
        raise APIError(400, message, param=param) from None


@router.post(
    "/v1/chat/completions",
    responses=ERROR_RESPONSES,
    summary="OpenAI chat completions; single-turn requests with one image are kept for adaptation",
    openapi_extra={
        "requestBody": {
            "required": True,
            # The schema is added to the document's components by `server.app.document_models`.
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChatRequest"}}},
        }
    },
)
async def chat_completions(
    request: Request,
    gateway: GatewayDep,
    client: ClientDep,
    idempotency_key: Annotated[str | None, Header()] = None,
    x_ttrv_stream: Annotated[str | None, Header()] = None,
) -> Response:
    s = gateway.settings
    raw = await read_capped(request, MAX_IMAGES * (s.max_image_bytes * 4 // 3) + 256 * 1024)
    req = parse(raw)
    target = await resolve(req.model, gateway)
    ctx = serving.context(req, idempotency_key, x_ttrv_stream, target)
    if req.stream:
        return await serving.stream(req, gateway, ctx)
    return await serving.complete(req, gateway, ctx)


@router.get("/v1/models", response_model=ModelList, responses=ERROR_RESPONSES, summary="Model names")
async def models(gateway: GatewayDep, client: ClientDep) -> ModelList:
    return await model_list(gateway)


@router.get(
    "/v1/models/{model}", response_model=ModelCard, responses=ERROR_RESPONSES, summary="One model name"
)
async def model(model: str, gateway: GatewayDep, client: ClientDep) -> ModelCard:
    await resolve(model, gateway)  # 404 for a name that does not exist or cannot be served
    for card in (await model_list(gateway)).data:
        if card.id == model or (model == gateway.settings.base_model_name and card.id == "base"):
            return card
    raise APIError(404, f"the model {model!r} does not exist", param="model", code="model_not_found")
