"""`POST /v1/chat/completions`: vLLM's chat completions, in front of the same engine, routing and
adaptation as `/v1/answer`.

A request is validated (`server/chat/protocol.py`), its images checked as `/v1/answer`'s are, and sent to
vLLM with the model name of the version it asked for (`server/chat/models.py`); the reply is vLLM's, with
the completion id and the name of the version that answered (also in the `X-TTRV-Adapter-Version` header).
vLLM's 404 for an adapter name is handled by the router (reload and retry, or the new current version).

Recorded for adaptation: a single-turn request (one user message) with exactly one image, exactly like a
`/v1/answer` request (same record schema and sampling): the question is its text, the answer the vote over
its choices. Other requests (text only, several images, several turns) are served and counted
(`ttrv_chat_requests_total{recorded}`) but not recorded: the worker rebuilds each prompt from a record as
one image and one question, and could not train on what it cannot rebuild.

The completion id (`chatcmpl-...`) is the record's id, so `POST /v1/feedback` takes it. An `Idempotency-Key`
header fixes it (`chatcmpl-<key>`): a repeat of a recorded request gets the first reply again and adds no
record.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import JSONResponse, StreamingResponse
from redis.exceptions import RedisError

from core.answers import vote
from core.engine import AdapterNotLoadedError, EngineRefusedError, EngineUnavailableError
from core.records import StoredAnswer
from core.routing import Route
from core.wire import STREAM_PATTERN, AnswerResponse
from server.chat.images import load_image
from server.chat.protocol import ChatRequest, ImagePart, TextPart
from server.deps import Gateway
from server.errors import APIError, refused
from server.images import CheckedImage
from server.queue import Record

IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9._:\-]{1,119}$"  # "chatcmpl-" + key stays a valid request id
VERSION_HEADER = "X-TTRV-Adapter-Version"


@dataclass
class Prepared:
    """A validated request: the body for vLLM (without its model), and what a record of it would keep."""

    body: dict[str, Any]
    image: CheckedImage | None  # the image of a recordable request
    question: str
    recordable: bool


@dataclass
class Context:
    """Where the request goes, and under which id and stream it is recorded."""

    completion_id: str
    stream: str  # the adaptation stream
    target: Route | None  # None: the current version, followed
    idempotent: bool  # the id comes from an Idempotency-Key
    started: float = field(default_factory=time.perf_counter)


async def prepare(req: ChatRequest, gateway: Gateway) -> Prepared:
    s = gateway.settings
    body = req.model_dump(exclude_none=True, exclude={"metadata", "max_completion_tokens", "model"})
    requested = req.max_completion_tokens or req.max_tokens or s.chat_max_tokens
    body["max_tokens"] = min(requested, s.chat_max_tokens)
    images: list[CheckedImage] = []
    texts: list[str] = []
    for i, message in enumerate(req.messages):
        if not isinstance(message.content, list):
            texts.append(message.content or "")
            continue
        for j, part in enumerate(message.content):
            if isinstance(part, TextPart):
                texts.append(part.text)
            elif isinstance(part, ImagePart):
                param = f"messages.{i}.content.{j}.image_url"
                checked, url = await load_image(part.image_url.url, s, param)
                images.append(checked)
                body["messages"][i]["content"][j]["image_url"]["url"] = url
    recordable = len(req.messages) == 1 and req.messages[0].role == "user" and len(images) == 1
    question = "\n".join(t.strip() for t in texts if t.strip())
    if recordable and not question:
        recordable = False  # no question to ask again: nothing the worker could train on
    return Prepared(body, images[0] if recordable else None, question, recordable)


def context(
    req: ChatRequest, idempotency_key: str | None, stream_header: str | None, target: Route | None
) -> Context:
    """The request's id and adaptation stream: the `X-TTRV-Stream` header, else `metadata.ttrv_stream`."""
    if idempotency_key is not None and not re.match(IDEMPOTENCY_KEY_PATTERN, idempotency_key):
        raise APIError(
            400, "Idempotency-Key must be 1-119 letters, digits or ._:- characters", param="Idempotency-Key"
        )
    stream = stream_header or (req.metadata or {}).get("ttrv_stream") or "default"
    if not re.match(STREAM_PATTERN, stream):
        raise APIError(
            400, f"adaptation stream {stream!r} must match {STREAM_PATTERN}", param="X-TTRV-Stream"
        )
    key = idempotency_key or uuid.uuid4().hex
    return Context(f"chatcmpl-{key}", stream, target, idempotency_key is not None)


def _headers(route: Route) -> dict[str, str]:
    return {VERSION_HEADER: str(route.version)}


def _engine_error(err: Exception, gateway: Gateway) -> APIError:
    if isinstance(err, EngineRefusedError):
        return refused(err)
    return APIError(503, "the model engine is unavailable; retry after a moment", "engine_unavailable",
                    retry_after_s=gateway.settings.retry_after_s)  # fmt: skip


async def _earlier(gateway: Gateway, ctx: Context) -> StoredAnswer | None:
    """The reply already given under this Idempotency-Key, if any (None while Redis is down)."""
    if not ctx.idempotent:
        return None
    try:
        stored = await gateway.records.served(ctx.completion_id)
    except RedisError:
        return None
    if stored is not None and stored.completion is None:
        raise APIError(422, "this Idempotency-Key was used by a /v1/answer request", param="Idempotency-Key")
    return stored


async def _record(
    gateway: Gateway, prepared: Prepared, ctx: Context, route: Route, texts: list[str], reply: dict[str, Any]
) -> None:
    if not prepared.recordable or prepared.image is None:
        gateway.metrics.chat_requests.labels("false").inc()
        return
    gateway.metrics.chat_requests.labels("true").inc()
    answer, confidence = vote(texts, None, gateway.extract)
    response = AnswerResponse(
        id=ctx.completion_id,
        answer=answer,
        text=texts[0] if texts else "",
        adapter_version=route.version,
        confidence=confidence,
        latency_ms=round((time.perf_counter() - ctx.started) * 1000, 2),
    )
    image = prepared.image
    record = Record(
        response, image.data, image.sha256, prepared.question, None, ctx.stream, len(texts), time.time(),
        mime=image.mime, completion=reply,
    )  # fmt: skip
    await gateway.records.write(record)


async def complete(req: ChatRequest, gateway: Gateway, ctx: Context) -> JSONResponse:
    """A chat completion, not streamed."""
    prepared = await prepare(req, gateway)
    if (earlier := await _earlier(gateway, ctx)) is not None and earlier.completion is not None:
        return JSONResponse(earlier.completion, headers={VERSION_HEADER: str(earlier.adapter_version)})

    async def ask(route: Route) -> dict[str, Any]:
        return await gateway.engine.chat({**prepared.body, "model": route.name})

    try:
        with gateway.in_flight:
            reply, route = await gateway.router.call(ask, ctx.target)
    except (AdapterNotLoadedError, EngineUnavailableError, EngineRefusedError) as err:
        raise _engine_error(err, gateway) from None
    reply["id"] = ctx.completion_id
    reply["model"] = route.name
    texts = [str((c.get("message") or {}).get("content") or "") for c in reply.get("choices", [])]
    await _record(gateway, prepared, ctx, route, texts, reply)
    return JSONResponse(reply, headers=_headers(route))


@dataclass
class Assembled:
    """A streamed completion put back together: what is recorded, and replayed to a repeat of its key."""

    texts: dict[int, list[str]] = field(default_factory=dict)
    finish: dict[int, str | None] = field(default_factory=dict)
    usage: dict[str, Any] | None = None
    created: int = 0

    def add(self, chunk: dict[str, Any]) -> None:
        self.created = int(chunk.get("created") or self.created)
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            index = int(choice.get("index", 0))
            delta = choice.get("delta") or {}
            self.texts.setdefault(index, []).append(str(delta.get("content") or ""))
            if choice.get("finish_reason") is not None:
                self.finish[index] = choice["finish_reason"]

    def completion(self, completion_id: str, model: str) -> dict[str, Any]:
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": "".join(self.texts[i])},
                "finish_reason": self.finish.get(i),
            }
            for i in sorted(self.texts)
        ]
        reply = {"id": completion_id, "object": "chat.completion", "created": self.created, "model": model}
        return {**reply, "choices": choices, "usage": self.usage}


def _event(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


def replayed_stream(completion: dict[str, Any]) -> list[str]:
    """The events of a stream that gives a stored completion again: one chunk per choice, then [DONE]."""
    events = []
    for choice in completion.get("choices", []):
        delta = {"role": "assistant", "content": choice["message"]["content"]}
        chunk = {
            "id": completion["id"],
            "object": "chat.completion.chunk",
            "created": completion.get("created", 0),
            "model": completion["model"],
            "choices": [
                {"index": choice["index"], "delta": delta, "finish_reason": choice.get("finish_reason")}
            ],
        }
        events.append(_event(chunk))
    return [*events, _event("[DONE]")]


async def stream(req: ChatRequest, gateway: Gateway, ctx: Context) -> StreamingResponse:
    """A chat completion streamed as server-sent events, relayed from vLLM chunk by chunk."""
    prepared = await prepare(req, gateway)
    if (earlier := await _earlier(gateway, ctx)) is not None and earlier.completion is not None:
        return StreamingResponse(
            iter(replayed_stream(earlier.completion)),
            media_type="text/event-stream",
            headers={VERSION_HEADER: str(earlier.adapter_version)},
        )
    exits = AsyncExitStack()
    exits.enter_context(gateway.in_flight)  # 429 here, before anything is sent

    async def open_stream(route: Route) -> AsyncIterator[str]:
        body = {**prepared.body, "model": route.name}
        return await exits.enter_async_context(gateway.engine.chat_stream(body))

    try:
        lines, route = await gateway.router.call(open_stream, ctx.target)
    except (AdapterNotLoadedError, EngineUnavailableError, EngineRefusedError) as err:
        await exits.aclose()
        raise _engine_error(err, gateway) from None
    except BaseException:
        await exits.aclose()
        raise

    async def relay() -> AsyncIterator[str]:
        assembled = Assembled()
        done = False
        try:
            async for line in lines:
                if not line.startswith("data:"):
                    continue  # blank separators and comments: each event is re-sent with its own
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    yield _event("[DONE]")
                    break
                chunk = json.loads(data)
                if "choices" in chunk or "usage" in chunk:
                    chunk["id"], chunk["model"] = ctx.completion_id, route.name
                    assembled.add(chunk)
                yield _event(chunk)
        except EngineUnavailableError as err:
            error = {"message": f"the model engine stopped mid-answer: {err}", "type": "engine_unavailable"}
            yield _event({"error": {**error, "param": None, "code": 503}})
        finally:
            await exits.aclose()
        if done:  # a stream the client did not receive to its end is not recorded
            completion = assembled.completion(ctx.completion_id, route.name)
            texts = [c["message"]["content"] for c in completion["choices"]]
            await _record(gateway, prepared, ctx, route, texts, completion)

    return StreamingResponse(relay(), media_type="text/event-stream", headers=_headers(route))
