"""`POST /v1/answer`: validate, answer with the current adapter, record once, return at once."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from redis.exceptions import RedisError
from starlette.datastructures import UploadFile

from core.answers import render_question, vote
from core.engine import AdapterNotLoadedError, EngineRefusedError, EngineUnavailableError
from core.logs import request_id_var
from core.wire import ERROR_RESPONSES, AnswerRequest, AnswerResponse
from server.bodies import read_capped
from server.deps import ClientDep, Gateway, GatewayDep
from server.errors import APIError, refused
from server.images import CheckedImage, check_image, decode_base64_image
from server.queue import Record

router = APIRouter()
log = logging.getLogger("ttrv.gateway")

_BODY_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/AnswerRequest"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image", "question"],
                    "properties": {
                        "image": {"type": "string", "format": "binary"},
                        "question": {"type": "string"},
                        "options": {"type": "array", "items": {"type": "string"}},
                        "request_id": {"type": "string"},
                        "stream": {"type": "string"},
                        "samples": {"type": "integer"},
                    },
                }
            },
        },
    }
}


def _validate(data: dict[str, Any]) -> AnswerRequest:
    try:
        return AnswerRequest.model_validate(data)
    except ValidationError as err:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in err.errors()]) from None


async def parse_request(request: Request, gateway: Gateway) -> tuple[AnswerRequest, CheckedImage]:
    """The request and its checked image, from JSON (base64 image) or multipart (an `image` file part)."""
    s = gateway.settings
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        # max_part_size bounds the non-file fields; the file part is bounded by the read below.
        form = await request.form(max_files=1, max_fields=40, max_part_size=64 * 1024)
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise APIError(422, "multipart requests need an 'image' file part", param="image")
        if upload.content_type and not upload.content_type.startswith(("image/", "application/octet-stream")):
            raise APIError(
                415, f"image part has type {upload.content_type}; send an image file", param="image"
            )
        data = await upload.read(s.max_image_bytes + 1)
        fields: dict[str, Any] = {k: v for k, v in form.items() if k not in ("image", "options")}
        if form.getlist("options"):
            fields["options"] = [str(o) for o in form.getlist("options")]
        fields["image"] = "-"  # validated below from the file part
        return _validate(fields), check_image(data, s.max_image_bytes, s.max_image_pixels)
    if content_type != "application/json":
        raise APIError(415, "send application/json (base64 image) or multipart/form-data (image file)")
    body = await read_capped(request, s.max_image_bytes * 4 // 3 + 64 * 1024)
    try:
        req = AnswerRequest.model_validate_json(body)
    except ValidationError as err:
        if any(e["type"] == "json_invalid" for e in err.errors()):
            raise APIError(400, "request body is not valid JSON") from None
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in err.errors()]) from None
    data = decode_base64_image(req.image, s.max_image_bytes)
    return req, check_image(data, s.max_image_bytes, s.max_image_pixels)


async def _complete(gateway: Gateway, req: AnswerRequest, image: CheckedImage) -> tuple[list[str], int]:
    """Ask vLLM with the current adapter; vLLM's 404 for its name is handled by the router (reload and retry,
    or the new current version), so only an engine that is really unavailable reaches the client (503)."""
    s = gateway.settings
    question = render_question(req.question, req.options)
    temperature = 0.0 if req.samples == 1 else 1.0  # votes need samples; one answer is greedy
    try:
        texts, route = await gateway.router.complete(
            image.data, image.mime, question, n=req.samples, temperature=temperature, max_tokens=s.max_tokens
        )
    except (AdapterNotLoadedError, EngineUnavailableError) as err:
        log.warning("engine unavailable for %s: %s", gateway.router.route.name, err)
        raise APIError(503, "the model engine is unavailable; retry after a moment", "engine_unavailable",
                       retry_after_s=s.retry_after_s) from None  # fmt: skip
    except EngineRefusedError as err:
        raise refused(err) from None
    return texts, route.version


@router.post(
    "/v1/answer",
    response_model=AnswerResponse,
    responses=ERROR_RESPONSES,
    openapi_extra=_BODY_SCHEMA,
    summary="Answer a question about an image, now; the request is kept for adaptation",
)
async def answer(request: Request, gateway: GatewayDep, client: ClientDep) -> AnswerResponse:
    started = time.perf_counter()
    req, image = await parse_request(request, gateway)
    request_id = req.request_id or uuid.uuid4().hex
    request_id_var.set(request_id)
    if req.request_id and (earlier := await gateway.records.lookup(req.request_id)) is not None:
        return earlier
    try:
        backlog = await gateway.records.backlog()
    except RedisError:
        backlog = 0  # Redis down: answers are still served, records are buffered
    if backlog >= gateway.settings.max_backlog:
        message = f"adaptation backlog is full ({backlog} records); retry later"
        raise APIError(429, message, "rate_limit_error", retry_after_s=gateway.settings.retry_after_s)
    with gateway.in_flight:
        texts, version = await _complete(gateway, req, image)
    answer_text, confidence = vote(texts, req.options, gateway.extract)
    response = AnswerResponse(
        id=request_id,
        answer=answer_text,
        text=texts[0] if texts else "",
        adapter_version=version,
        confidence=confidence,
        latency_ms=round((time.perf_counter() - started) * 1000, 2),
    )
    record = Record(
        response, image.data, image.sha256, req.question, req.options, req.stream, req.samples, time.time(),
        mime=image.mime,
    )  # fmt: skip
    return await gateway.records.write(record)
