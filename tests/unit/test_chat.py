"""The OpenAI-compatible routes on a fake engine and fakeredis: what is sent to vLLM, what comes back, what
is recorded for adaptation, model names, idempotency, streaming and errors. The same with the real `openai`
package on the real stack: tests/integration/test_openai_api.py."""

from __future__ import annotations

import base64
import json
from typing import Any

import fakeredis
import pytest
from fastapi.testclient import TestClient

from core import keys
from server.settings import GatewaySettings
from tests.unit.fakes import FakeEngine, png
from tests.unit.gateway_app import assert_envelope, client_for, records

IMAGE_URL = "data:image/png;base64," + base64.b64encode(png()).decode()


def user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(parts)}


def image() -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": IMAGE_URL}}


def text(value: str = "Which digit is shown?") -> dict[str, Any]:
    return {"type": "text", "text": value}


def chat_body(**fields: Any) -> dict[str, Any]:
    return {"model": "ttrv", "messages": [user(image(), text())], **fields}


def test_a_chat_completion_is_vllms_reply_named_after_the_version_and_recorded(
    client: TestClient, engine: FakeEngine
) -> None:
    reply = client.post("/v1/chat/completions", json=chat_body(temperature=0, max_tokens=10_000))
    assert reply.status_code == 200, reply.text
    out = reply.json()
    assert out["id"].startswith("chatcmpl-")
    assert out["model"] == "base"  # the version that answered: the base model, nothing promoted yet
    assert reply.headers["X-TTRV-Adapter-Version"] == "0"
    assert out["choices"][0]["message"]["content"] == "7"
    assert out["usage"]["total_tokens"] > 0
    sent = engine.calls[-1]["body"]
    assert isinstance(sent, dict)
    assert sent["model"] == "base"
    assert sent["max_tokens"] == GatewaySettings().chat_max_tokens  # capped
    assert sent["messages"][0]["content"][0]["image_url"]["url"] == IMAGE_URL  # passed on, not re-encoded
    (record,) = records(client)
    assert (record["id"], record["question"], record["answer"]) == (out["id"], "Which digit is shown?", "7")
    assert (record["mime"], record["stream"], record["adapter_version"]) == ("image/png", "default", "0")


def test_only_single_turn_requests_with_one_image_are_recorded(client: TestClient) -> None:
    not_recorded = [
        [user(text("Say hello"))],  # no image
        [user(image(), image(), text())],  # two images
        [{"role": "system", "content": "Be brief."}, user(image(), text())],  # more than one message
        [user(image())],  # no question
    ]
    for messages in not_recorded:
        reply = client.post("/v1/chat/completions", json={"model": "ttrv", "messages": messages})
        assert reply.status_code == 200, reply.text
    assert records(client) == []
    assert client.post("/v1/chat/completions", json=chat_body()).status_code == 200
    assert len(records(client)) == 1
    metrics = client.get("/metrics").text
    assert 'ttrv_chat_requests_total{recorded="false"} 4.0' in metrics
    assert 'ttrv_chat_requests_total{recorded="true"} 1.0' in metrics


def test_the_stream_comes_from_a_header_or_metadata(client: TestClient) -> None:
    client.post("/v1/chat/completions", json=chat_body(), headers={"X-TTRV-Stream": "night"})
    client.post("/v1/chat/completions", json=chat_body(metadata={"ttrv_stream": "docs"}))
    assert [r["stream"] for r in records(client)] == ["night", "docs"]
    bad = client.post("/v1/chat/completions", json=chat_body(), headers={"X-TTRV-Stream": "Bad Name"})
    assert_envelope(bad, 400, "X-TTRV-Stream")


def test_an_idempotency_key_gives_the_first_reply_again_and_one_record(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    engine = FakeEngine(replies=[["7"], ["1"]])
    with client_for(redis, engine) as client:
        headers = {"Idempotency-Key": "order-42"}
        first = client.post("/v1/chat/completions", json=chat_body(), headers=headers).json()
        again = client.post("/v1/chat/completions", json=chat_body(), headers=headers).json()
        streamed = client.post("/v1/chat/completions", json=chat_body(stream=True), headers=headers)
        assert first["id"] == again["id"] == "chatcmpl-order-42"
        assert again == first
        assert len(engine.calls) == 1, "a repeat does not ask the engine"
        assert "".join(_contents(streamed.text)) == "7"
        assert len(records(client)) == 1
        feedback = client.post("/v1/feedback", json={"id": first["id"], "label": "7."})
        assert feedback.json()["correct"] is True


def _events(body: str) -> list[Any]:
    events = [line.removeprefix("data: ") for line in body.split("\n\n") if line.startswith("data: ")]
    return [e if e == "[DONE]" else json.loads(e) for e in events]


def _contents(body: str) -> list[str]:
    return [
        c["delta"].get("content") or "" for e in _events(body) if e != "[DONE]" for c in e.get("choices", [])
    ]


def test_a_stream_relays_vllms_chunks_renamed_ends_with_done_and_is_recorded(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    engine = FakeEngine(replies=[["42", "43"]])
    with client_for(redis, engine) as client:
        body = chat_body(stream=True, n=2, stream_options={"include_usage": True})
        with client.stream("POST", "/v1/chat/completions", json=body) as reply:
            assert reply.status_code == 200
            assert reply.headers["content-type"].startswith("text/event-stream")
            raw = "".join(reply.iter_text())
        events = _events(raw)
        assert events[-1] == "[DONE]"
        chunks = events[:-1]
        assert {c["model"] for c in chunks} == {"base"}
        assert len({c["id"] for c in chunks}) == 1
        assert chunks[-1]["usage"]["total_tokens"] > 0
        by_choice: dict[int, str] = {}
        for chunk in chunks:
            for choice in chunk["choices"]:
                by_choice[choice["index"]] = by_choice.get(choice["index"], "") + (
                    choice["delta"].get("content") or ""
                )
        assert by_choice == {0: "42", 1: "43"}
        (record,) = records(client)
        assert (record["id"], record["text"], record["samples"]) == (chunks[0]["id"], "42", "2")


def test_model_names_pin_a_version_or_the_base_and_unknown_ones_are_404(
    redis: fakeredis.FakeAsyncRedis, engine: FakeEngine
) -> None:
    with client_for(redis, engine) as client:
        portal = client.portal
        for version, status in ((2, "promoted"), (3, "rejected")):
            meta = json.dumps({"status": status, "path": f"/adapters/v{version}", "parent": version - 1})
            portal.call(redis.hset, keys.ADAPTER_VERSIONS, str(version), meta)
        portal.call(redis.set, keys.ADAPTER_CURRENT, 2)
        portal.call(client.app.state.gateway.router.refresh)  # type: ignore[attr-defined]
        current = client.post("/v1/chat/completions", json=chat_body())
        assert (current.json()["model"], current.headers["X-TTRV-Adapter-Version"]) == ("ttrv-v2", "2")
        assert client.post("/v1/chat/completions", json=chat_body(model="base")).json()["model"] == "base"
        assert (
            client.post("/v1/chat/completions", json=chat_body(model="ttrv-v2")).json()["model"] == "ttrv-v2"
        )
        for name in ("ttrv-v9", "ttrv-v3", "gpt-4o"):
            missing = client.post("/v1/chat/completions", json=chat_body(model=name))
            assert missing.status_code == 404
            assert missing.json()["error"]["code"] == "model_not_found"  # OpenAI's code for it
            assert missing.json()["error"]["param"] == "model"
        listing = client.get("/v1/models").json()
        assert listing["object"] == "list"
        assert [m["id"] for m in listing["data"]] == ["ttrv", "base", "ttrv-v2"]
        assert listing["data"][0]["ttrv_version"] == 2
        assert listing["data"][2]["parent"] == "ttrv-v1"
        assert client.get("/v1/models/ttrv-v2").json()["id"] == "ttrv-v2"
        assert client.get("/v1/models/ttrv-v3").status_code == 404


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"n": 0}, "n"),
        ({"temperature": 3}, "temperature"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"messages": []}, "messages"),
        ({"messages": [user({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}})]},
         "messages.0.content.0.image_url"),
        ({"messages": [user({"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}})]},
         "messages.0.content.0.image_url"),
    ],
)  # fmt: skip
def test_bad_requests_are_400_naming_the_parameter(
    client: TestClient, change: dict[str, Any], param: str
) -> None:
    error = assert_envelope(client.post("/v1/chat/completions", json=chat_body(**change)), 400, param)
    assert error["type"] == "invalid_request_error"
    assert records(client) == []


def test_chat_needs_the_api_key(client: TestClient) -> None:
    reply = client.post("/v1/chat/completions", json=chat_body(), headers={"Authorization": "Bearer nope"})
    assert_envelope(reply, 401)
    assert_envelope(client.get("/v1/models", headers={"Authorization": ""}), 401)


def test_the_engine_being_down_is_503_with_retry_after(client: TestClient, engine: FakeEngine) -> None:
    engine.down = True
    for body in (chat_body(), chat_body(stream=True)):
        reply = client.post("/v1/chat/completions", json=body)
        assert_envelope(reply, 503)
        assert reply.headers["Retry-After"] == "2"


def test_the_request_schema_is_documented(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "ChatRequest" in schema["components"]["schemas"]
    assert "/v1/models" in schema["paths"]


def test_x_request_id_is_echoed_or_made(client: TestClient) -> None:
    given = client.post("/v1/chat/completions", json=chat_body(), headers={"X-Request-Id": "trace-7"})
    assert given.headers["X-Request-Id"] == "trace-7"
    made = client.get("/v1/models")
    assert len(made.headers["X-Request-Id"]) == 32
    bad = client.get("/v1/models", headers={"X-Request-Id": "x" * 200})
    assert bad.headers["X-Request-Id"] != "x" * 200
