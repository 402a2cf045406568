"""Every API call as data: what to send, with which credential, and how to read the reply.

The sync and async clients differ only in how they do I/O, so everything else lives here as plain
functions: building the body, choosing the `Authorization` header, parsing a reply, and turning a failed
one into a `TTRVError`. Each public method of a client is one line: run the `Call` this module builds.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from clients.errors import NO_REPLY, TTRVError
from clients.models import AdapterList, Answer, AnswerRequest, ErrorEnvelope, FeedbackRequest
from clients.retry import Outcome, parse_retry_after

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

ImageInput = bytes | Path | str  # raw bytes, or the path of an image file


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request to the gateway and the parser of its successful reply."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    body: dict[str, Any] | None = None
    admin: bool = False  # sent with the admin token instead of the API key
    retry: bool = True  # retried on 429/503 and connection failures
    accept: frozenset[int] = field(default_factory=frozenset)  # non-2xx statuses that are replies too


def auth_headers(call: Call[Any], api_key: str | None, admin_token: str | None) -> dict[str, str]:
    """`Authorization: Bearer ...`: the admin token on admin routes, the API key elsewhere, none if unset.

    Nothing is sent when the credential is not configured, so a gateway without auth (the local demo)
    works, and one with auth answers 401/403 with its own message.
    """
    secret = admin_token if call.admin else api_key
    return {"Authorization": f"Bearer {secret}"} if secret else {}


def read_image(image: ImageInput) -> bytes:
    """Bytes as given; a `Path` or a `str` is a file to read (a str is never taken as image data)."""
    return image if isinstance(image, bytes) else Path(image).read_bytes()


def answer_call(
    image: ImageInput,
    question: str,
    *,
    options: list[str] | None = None,
    request_id: str | None = None,
    stream: str | None = None,
    samples: int | None = None,
) -> Call[Answer]:
    """`POST /v1/answer` with the image base64-encoded, under an idempotency key fixed for all retries."""
    request = AnswerRequest(
        image=base64.b64encode(read_image(image)).decode("ascii"),
        question=question,
        options=options,
        request_id=request_id or uuid.uuid4().hex,
        stream=stream,
        samples=samples,
    )
    return Call("POST", "/v1/answer", parse=model_parser(Answer), body=request.body())


def feedback_call(id: str, label: str) -> Call[None]:  # `id` as on the wire
    body = FeedbackRequest(id=id, label=label).model_dump()
    return Call("POST", "/v1/feedback", parse=ignore_body, body=body)


def adapters_call() -> Call[AdapterList]:
    return Call("GET", "/v1/adapters", parse=model_parser(AdapterList))


def promote_call(version: int) -> Call[AdapterList | dict[str, Any]]:
    return Call("POST", f"/v1/adapters/{int(version)}/promote", parse=adapters_or_json, admin=True)


def adaptation_call(action: str) -> Call[dict[str, Any]]:
    """`POST /v1/adaptation/pause` or `.../resume` (admin)."""
    if action not in ("pause", "resume"):
        raise ValueError(f"adaptation action must be 'pause' or 'resume', not {action!r}")
    return Call("POST", f"/v1/adaptation/{action}", parse=json_object, admin=True)


def health_call() -> Call[dict[str, Any]]:
    return Call("GET", "/health", parse=json_object)


def ready_call() -> Call[dict[str, Any]]:
    """`GET /ready`: 503 is an answer here (a component is down), read rather than retried or raised."""
    return Call("GET", "/ready", parse=json_object, retry=False, accept=frozenset({503}))


def ignore_body(response: httpx.Response) -> None:
    return None


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The reply's JSON object (`{}` for an empty body)."""
    if not response.content.strip():
        return {}
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise invalid_reply(response, "expected a JSON object")
    return data


def model_parser(model: type[M]) -> Callable[[httpx.Response], M]:
    def parse(response: httpx.Response) -> M:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise invalid_reply(response, f"expected {model.__name__}: {exc.errors()[0]['msg']}") from exc

    return parse


def adapters_or_json(response: httpx.Response) -> AdapterList | dict[str, Any]:
    """The registry if the server returns it (as `GET /v1/adapters` does), else its JSON object as is."""
    data = json_object(response)
    try:
        return AdapterList.model_validate(data)
    except ValidationError:
        return data


def invalid_reply(response: httpx.Response, why: str) -> TTRVError:
    request = response.request
    return TTRVError(
        response.status_code,
        f"{request.method} {request.url.path} replied with a body the client cannot read ({why}): "
        f"{response.text[:200]!r}; is the URL that of a TTRV gateway of a compatible version?",
        type="invalid_response",
    )


def error_from_response(response: httpx.Response) -> TTRVError:
    """The server's error envelope as a `TTRVError`; a body that is not one still names the status."""
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    try:
        detail = ErrorEnvelope.model_validate_json(response.content).error
    except ValidationError:
        request = response.request
        return TTRVError(
            response.status_code,
            f"HTTP {response.status_code} from {request.method} {request.url.path}, and the body is not a "
            f"TTRV error envelope: {response.text[:200]!r}; "
            "check the URL and any proxy in front of the gateway",
            type="http_error",
            retry_after=retry_after,
        )
    return TTRVError(
        response.status_code,
        detail.message,
        type=detail.type,
        param=detail.param,
        code=detail.code,
        retry_after=retry_after,
    )


def conclude(call: Call[T], outcome: Outcome, url: str) -> T:
    """The parsed reply of the last attempt, or the `TTRVError` it amounts to."""
    if isinstance(outcome, httpx.TransportError):
        raise TTRVError(
            NO_REPLY,
            f"no reply from {url} to {call.method} {call.path} ({type(outcome).__name__}: {outcome}); "
            "is the gateway running at that URL (TTRV_URL / --url)?",
            type="connection_error",
        ) from outcome
    if outcome.is_success or outcome.status_code in call.accept:
        return call.parse(outcome)
    raise error_from_response(outcome)
