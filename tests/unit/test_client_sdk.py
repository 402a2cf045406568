"""The SDK against `httpx.MockTransport`: bodies, auth, retries, errors; the sync and async clients alike."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from clients.errors import NO_REPLY, TTRVError
from clients.models import AdapterList, Answer
from clients.sdk import AsyncTTRVClient, TTRVClient
from clients.settings import ClientSettings

URL = "http://gateway.test"
ANSWER = {"id": "r1", "answer": "7", "text": "7", "adapter_version": 3, "confidence": None, "latency_ms": 1.5}
REGISTRY = {
    "current": 2,
    "versions": [
        {"version": 0, "status": "base"},
        {"version": 2, "status": "promoted", "parent": 0, "metrics": {"reward": 0.5}, "new_field": 1},
    ],
}

Handler = Callable[[httpx.Request], httpx.Response]


def envelope(
    status: int,
    message: str,
    type_: str,
    *,
    param: str | None = None,
    code: Any = None,
    retry_after: str | None = None,
) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return httpx.Response(status, json=body, headers=headers)


def scripted(*replies: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler that gives `replies` in order (the last one again once they run out) and records requests."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        reply = replies[min(len(seen), len(replies)) - 1]
        if isinstance(reply, Exception):
            raise reply
        return reply

    return handle, seen


class Top(random.Random):
    """Jitter at its maximum, so backoff delays are exact."""

    def random(self) -> float:
        return 1.0


class Harness:
    """Runs one client method on the sync or the async client, with the same transport and fake sleep."""

    def __init__(self, kind: str, handler: Handler, **options: Any) -> None:
        self.kind = kind
        self.handler = handler
        self.sleeps: list[float] = []
        settings = ClientSettings(url=URL, api_key="pub-key", admin_token="adm-token")
        self.options = {"settings": settings, "rng": Top(), **options}

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        transport = httpx.MockTransport(self.handler)
        if self.kind == "sync":
            with TTRVClient(transport=transport, sleep=self.sleeps.append, **self.options) as client:
                return getattr(client, method)(*args, **kwargs)

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        async def run() -> Any:
            async with AsyncTTRVClient(transport=transport, sleep=sleep, **self.options) as client:
                return await getattr(client, method)(*args, **kwargs)

        return asyncio.run(run())


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def body(request: httpx.Request) -> dict[str, Any]:
    data = json.loads(request.content)
    assert isinstance(data, dict)
    return data


def test_answer_sends_the_image_base64_with_the_fields_given(kind: str, tmp_path: Path) -> None:
    handler, seen = scripted(httpx.Response(200, json=ANSWER))
    reply = Harness(kind, handler)(
        "answer",
        b"\x89PNG-bytes",
        "Which?",
        options=["cat", "dog"],
        stream="tenant-a",
        samples=5,
        request_id="my-id",
    )
    assert reply == Answer.model_validate(ANSWER)
    (request,) = seen
    assert (request.method, request.url) == ("POST", httpx.URL(f"{URL}/v1/answer"))
    assert body(request) == {
        "image": base64.b64encode(b"\x89PNG-bytes").decode(),
        "question": "Which?",
        "options": ["cat", "dog"],
        "request_id": "my-id",
        "stream": "tenant-a",
        "samples": 5,
    }


@pytest.mark.parametrize("as_type", [str, Path])
def test_a_str_or_path_image_is_a_file_to_read(kind: str, tmp_path: Path, as_type: type) -> None:
    image = tmp_path / "digit.png"
    image.write_bytes(b"file-bytes")
    handler, seen = scripted(httpx.Response(200, json=ANSWER))
    Harness(kind, handler)("answer", as_type(image), "Which?")
    sent = body(seen[0])
    assert base64.b64decode(sent["image"]) == b"file-bytes"
    assert set(sent) == {"image", "question", "request_id"}  # unset options are not sent


def test_retries_sleep_what_retry_after_says_and_keep_the_request_id(kind: str) -> None:
    handler, seen = scripted(
        envelope(429, "queue full", "rate_limit_error", retry_after="2"),
        envelope(503, "engine down", "engine_unavailable", retry_after="7"),
        httpx.Response(200, json=ANSWER),
    )
    harness = Harness(kind, handler)
    assert harness("answer", b"img", "Which?").answer == "7"
    assert harness.sleeps == [2.0, 7.0]
    ids = {body(request)["request_id"] for request in seen}
    assert len(seen) == 3
    assert len(ids) == 1, "a retry must reuse the idempotency key"
    assert uuid.UUID(ids.pop()).version == 4


def test_each_answer_call_gets_its_own_generated_request_id(kind: str) -> None:
    handler, seen = scripted(httpx.Response(200, json=ANSWER))
    harness = Harness(kind, handler)
    harness("answer", b"img", "Which?")
    harness("answer", b"img", "Which?")
    assert body(seen[0])["request_id"] != body(seen[1])["request_id"]


def test_retry_after_is_capped_by_max_backoff(kind: str) -> None:
    handler, _ = scripted(
        envelope(429, "slow down", "rate_limit_error", retry_after="100"), httpx.Response(200, json=ANSWER)
    )
    harness = Harness(kind, handler, max_backoff_s=4.0)
    harness("answer", b"img", "Which?")
    assert harness.sleeps == [4.0]


def test_without_retry_after_backoff_doubles_up_to_the_cap(kind: str) -> None:
    handler, seen = scripted(httpx.Response(503, text="busy"))
    harness = Harness(kind, handler, max_retries=5, max_backoff_s=3.0)
    with pytest.raises(TTRVError):
        harness("adapters")
    assert harness.sleeps == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert len(seen) == 6


def test_backoff_is_jittered_between_half_and_all_of_the_step(kind: str) -> None:
    handler, _ = scripted(httpx.Response(503, text="busy"))
    harness = Harness(kind, handler, max_retries=4, rng=random.Random(1))
    with pytest.raises(TTRVError):
        harness("adapters")
    steps = [0.5, 1.0, 2.0, 4.0]
    assert all(step / 2 <= slept <= step for slept, step in zip(harness.sleeps, steps, strict=True))
    assert len(set(harness.sleeps) - set(steps)) == len(steps), "no jitter was applied"


def test_gives_up_after_max_retries_with_the_envelope_fields(kind: str) -> None:
    handler, seen = scripted(
        envelope(
            429,
            "too many in flight; retry later",
            "rate_limit_error",
            param="samples",
            code="busy",
            retry_after="1",
        )
    )
    harness = Harness(kind, handler, max_retries=3)
    with pytest.raises(TTRVError) as caught:
        harness("answer", b"img", "Which?")
    error = caught.value
    assert len(seen) == 4
    assert harness.sleeps == [1.0, 1.0, 1.0]
    assert (error.status, error.type, error.message) == (
        429,
        "rate_limit_error",
        "too many in flight; retry later",
    )
    assert (error.param, error.code, error.retry_after) == ("samples", "busy", 1.0)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 415, 422, 500])
def test_other_errors_are_raised_at_once(kind: str, status: int) -> None:
    handler, seen = scripted(envelope(status, "what is wrong and what to do", "invalid_request", code=status))
    harness = Harness(kind, handler)
    with pytest.raises(TTRVError) as caught:
        harness("answer", b"img", "Which?")
    assert len(seen) == 1
    assert harness.sleeps == []
    assert (caught.value.status, caught.value.code, caught.value.retry_after) == (status, status, None)


def test_a_body_that_is_not_an_envelope_is_reported_with_its_status(kind: str) -> None:
    handler, _ = scripted(httpx.Response(502, text="<html>Bad Gateway</html>"))
    with pytest.raises(TTRVError) as caught:
        Harness(kind, handler)("adapters")
    assert caught.value.status == 502
    assert "HTTP 502" in caught.value.message
    assert "not a TTRV error envelope" in caught.value.message
    assert "Bad Gateway" in caught.value.message


def test_connection_failures_are_retried_then_reported_as_no_reply(kind: str) -> None:
    handler, seen = scripted(httpx.ConnectError("refused"))
    harness = Harness(kind, handler, max_retries=2)
    with pytest.raises(TTRVError) as caught:
        harness("health")
    assert len(seen) == 3
    assert len(harness.sleeps) == 2
    assert (caught.value.status, caught.value.type) == (NO_REPLY, "connection_error")
    assert URL in caught.value.message


def test_a_timeout_then_a_reply_succeeds_with_the_same_request_id(kind: str) -> None:
    handler, seen = scripted(httpx.ReadTimeout("slow"), httpx.Response(200, json=ANSWER))
    harness = Harness(kind, handler)
    assert harness("answer", b"img", "Which?").id == "r1"
    assert body(seen[0])["request_id"] == body(seen[1])["request_id"]
    assert harness.sleeps == [0.5]


@pytest.mark.parametrize(
    ("method", "args", "path", "token"),
    [
        ("answer", (b"img", "Which?"), "/v1/answer", "pub-key"),
        ("feedback", ("r1", "7"), "/v1/feedback", "pub-key"),
        ("adapters", (), "/v1/adapters", "pub-key"),
        ("promote", (4,), "/v1/adapters/4/promote", "adm-token"),
        ("pause", (), "/v1/adaptation/pause", "adm-token"),
        ("resume", (), "/v1/adaptation/resume", "adm-token"),
    ],
)
def test_public_routes_send_the_api_key_and_admin_routes_the_admin_token(
    kind: str, method: str, args: tuple[Any, ...], path: str, token: str
) -> None:
    reply = {"answer": ANSWER, "adapters": REGISTRY, "promote": REGISTRY}.get(method, {"paused": True})
    handler, seen = scripted(httpx.Response(200, json=reply))
    Harness(kind, handler)(method, *args)
    (request,) = seen
    assert (request.method, request.url.path) == ("GET" if method == "adapters" else "POST", path)
    assert request.headers["Authorization"] == f"Bearer {token}"


def test_no_authorization_header_when_no_credential_is_configured(kind: str) -> None:
    handler, seen = scripted(httpx.Response(200, json={"paused": True}))
    settings = ClientSettings(url=URL, api_key=None, admin_token=None)
    Harness(kind, handler, settings=settings)("pause")
    assert "Authorization" not in seen[0].headers


def test_feedback_sends_id_and_label(kind: str) -> None:
    handler, seen = scripted(httpx.Response(200, json={"id": "r1", "correct": True, "adapter_version": 1}))
    assert Harness(kind, handler)("feedback", "r1", "7") is None
    assert body(seen[0]) == {"id": "r1", "label": "7"}


def test_adapters_parse_and_ignore_unknown_fields(kind: str) -> None:
    handler, _ = scripted(httpx.Response(200, json=REGISTRY))
    registry = Harness(kind, handler)("adapters")
    assert isinstance(registry, AdapterList)
    assert registry.current == 2
    assert [(v.version, v.status, v.parent) for v in registry.versions] == [
        (0, "base", None),
        (2, "promoted", 0),
    ]
    assert registry.versions[1].metrics == {"reward": 0.5}


def test_promote_returns_the_registry_or_else_the_json(kind: str) -> None:
    handler, _ = scripted(httpx.Response(200, json=REGISTRY))
    assert isinstance(Harness(kind, handler)("promote", 2), AdapterList)
    handler, _ = scripted(httpx.Response(200, json={"current": "v2"}))
    assert Harness(kind, handler)("promote", 2) == {"current": "v2"}


def test_ready_returns_the_components_on_503_without_retrying(kind: str) -> None:
    state = {"ready": False, "components": {"vllm": {"ok": False, "detail": "unreachable"}}}
    handler, seen = scripted(httpx.Response(503, json=state, headers={"Retry-After": "5"}))
    harness = Harness(kind, handler)
    assert harness("ready") == state
    assert len(seen) == 1
    assert harness.sleeps == []


def test_a_success_with_an_unreadable_body_is_an_error(kind: str) -> None:
    handler, _ = scripted(httpx.Response(200, json={"id": "r1"}))
    with pytest.raises(TTRVError) as caught:
        Harness(kind, handler)("answer", b"img", "Which?")
    assert caught.value.type == "invalid_response"
    assert "Answer" in caught.value.message


def test_http_date_retry_after_in_the_past_means_no_wait(kind: str) -> None:
    handler, _ = scripted(
        envelope(503, "down", "engine_unavailable", retry_after="Wed, 21 Oct 2015 07:28:00 GMT"),
        httpx.Response(200, json={"status": "ok"}),
    )
    harness = Harness(kind, handler)
    assert harness("health") == {"status": "ok"}
    assert harness.sleeps == [0.0]


def test_settings_come_from_ttrv_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTRV_URL", "http://from-env.test:9000")
    monkeypatch.setenv("TTRV_API_KEY", "env-key")
    monkeypatch.setenv("TTRV_TIMEOUT_S", "7.5")
    handler, seen = scripted(httpx.Response(200, json={"status": "ok"}))
    with TTRVClient(transport=httpx.MockTransport(handler)) as client:
        client.health()
        assert client.config.timeout_s == 7.5
    assert seen[0].url == httpx.URL("http://from-env.test:9000/health")
    assert seen[0].headers["Authorization"] == "Bearer env-key"
    with TTRVClient(api_key="arg-key", transport=httpx.MockTransport(handler)) as client:
        client.health()
    assert seen[1].headers["Authorization"] == "Bearer arg-key"


def test_retry_settings_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        TTRVClient(URL, max_retries=-1)
