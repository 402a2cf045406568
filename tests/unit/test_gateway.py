"""The gateway's routes on a fake engine and fakeredis: the wire contract, errors, idempotency, records."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import fakeredis
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from core import keys
from tests.unit.fakes import FakeEngine, png
from tests.unit.gateway_app import ADMIN, assert_envelope, client_for, records


def body(**fields: Any) -> dict[str, Any]:
    return {"image": base64.b64encode(png()).decode(), "question": "Which digit?", **fields}


def test_answer_json_returns_contract_fields_and_records_once(client: TestClient, engine: FakeEngine) -> None:
    reply = client.post("/v1/answer", json=body())
    assert reply.status_code == 200, reply.text
    out = reply.json()
    assert set(out) == {"id", "answer", "text", "adapter_version", "confidence", "latency_ms"}
    assert (out["answer"], out["text"], out["adapter_version"], out["confidence"]) == ("7", "7", 0, None)
    assert engine.calls[0]["temperature"] == 0.0
    (record,) = records(client)
    assert record["id"] == out["id"]
    assert record["answer"] == "7"
    assert record["question"] == "Which digit?"
    assert record["image"].startswith("ttrv:image:")
    stored = client.portal.call(client.app.state.gateway.redis.get, record["image"])  # type: ignore[attr-defined]
    assert stored == png()


def test_answer_multipart_like_curl(client: TestClient, engine: FakeEngine) -> None:
    reply = client.post(
        "/v1/answer",
        files={"image": ("x.png", png(), "image/png")},
        data={"question": "Which digit?", "samples": "3"},
    )
    assert reply.status_code == 200, reply.text
    assert engine.calls[0]["n"] == 3
    assert len(records(client)) == 1


def test_samples_vote_and_report_confidence(redis: fakeredis.FakeAsyncRedis) -> None:
    engine = FakeEngine(replies=[["3", "8", "3", "3", "?"]])
    with client_for(redis, engine) as client:
        out = client.post("/v1/answer", json=body(samples=5)).json()
    assert out["answer"] == "3"
    assert out["confidence"] == pytest.approx(3 / 5)
    assert engine.calls[0]["temperature"] == 1.0


def test_options_are_rendered_and_answered_with_a_letter(redis: fakeredis.FakeAsyncRedis) -> None:
    engine = FakeEngine(replies=[["I would say B."]])
    with client_for(redis, engine) as client:
        out = client.post("/v1/answer", json=body(options=["cat", "dog", "fish"])).json()
    assert out["answer"] == "B"
    assert "A. cat\nB. dog\nC. fish" in str(engine.calls[0]["question"])


def test_same_request_id_gives_one_record_and_the_first_answer(redis: fakeredis.FakeAsyncRedis) -> None:
    engine = FakeEngine(replies=[["4"], ["9"]])
    with client_for(redis, engine) as client:
        first = client.post("/v1/answer", json=body(request_id="req-1")).json()
        second = client.post("/v1/answer", json=body(request_id="req-1")).json()
        assert len(records(client)) == 1
    assert first == second
    assert first["id"] == "req-1"


@pytest.mark.parametrize(
    ("payload", "status", "param"),
    [
        ({"image": "not base64!!"}, 400, "image"),
        ({"image": base64.b64encode(b"plain text, not an image").decode()}, 400, "image"),
        ({"image": "data:text/plain;base64,aGVsbG8="}, 415, "image"),
        ({"image": "https://example.com/x.png"}, 400, "image"),
        ({"samples": 33}, 422, "samples"),
        ({"samples": "many"}, 422, "samples"),
        ({"stream": "Bad Stream!"}, 422, "stream"),
        ({"unexpected": 1}, 422, "unexpected"),
        ({"options": ["only one"]}, 422, "options"),
        ({"question": ""}, 422, "question"),
    ],
)
def test_bad_fields_get_the_envelope(
    client: TestClient, payload: dict[str, Any], status: int, param: str
) -> None:
    assert_envelope(client.post("/v1/answer", json=body(**payload)), status, param)
    assert records(client) == []


def test_missing_question_and_broken_json(client: TestClient) -> None:
    assert_envelope(client.post("/v1/answer", json={"image": body()["image"]}), 422, "question")
    broken = client.post("/v1/answer", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_envelope(broken, 400)
    assert_envelope(client.post("/v1/answer", content=b"x", headers={"Content-Type": "text/plain"}), 415)


def test_size_limits_and_decompression_bombs(redis: fakeredis.FakeAsyncRedis, engine: FakeEngine) -> None:
    with client_for(redis, engine, max_image_bytes=2000, max_image_pixels=100 * 100) as client:
        assert_envelope(client.post("/v1/answer", json=body()), 413, "image")  # 56x56 noise PNG > 2000 bytes
        big = base64.b64encode(png(200, 200, seed=1)[:1]).decode()
        assert_envelope(client.post("/v1/answer", json={**body(), "image": big}), 400, "image")
    with client_for(redis, engine, max_image_pixels=100 * 100) as client:
        bomb = base64.b64encode(png(120, 120)).decode()
        assert_envelope(client.post("/v1/answer", json={**body(), "image": bomb}), 413, "image")
        truncated = base64.b64encode(png()[:200]).decode()
        assert_envelope(client.post("/v1/answer", json={**body(), "image": truncated}), 400, "image")


def test_auth(redis: fakeredis.FakeAsyncRedis, engine: FakeEngine) -> None:
    with client_for(redis, engine) as client:
        assert_envelope(client.post("/v1/answer", json=body(), headers={"Authorization": ""}), 401)
        assert_envelope(client.post("/v1/answer", json=body(), headers={"Authorization": "Bearer nope"}), 401)
        assert_envelope(client.post("/v1/adaptation/pause"), 403)  # an API key on an admin route
        ok = client.post("/v1/adaptation/pause", headers={"Authorization": f"Bearer {ADMIN}"})
        assert ok.json() == {"paused": True}
    with client_for(redis, engine, admin_token=None) as client:
        assert_envelope(client.post("/v1/adaptation/resume"), 403)


def test_rate_limit_and_backlog_answer_429_with_retry_after(
    redis: fakeredis.FakeAsyncRedis, engine: FakeEngine
) -> None:
    with client_for(redis, engine, rate_limit_per_s=0.01, rate_limit_burst=2) as client:
        assert client.post("/v1/answer", json=body()).status_code == 200
        assert client.post("/v1/answer", json=body()).status_code == 200
        limited = client.post("/v1/answer", json=body())
        assert_envelope(limited, 429)
        assert int(limited.headers["Retry-After"]) >= 1
    with client_for(redis, engine, max_backlog=2) as client:
        # Two records are already waiting for the worker from the block above.
        full = client.post("/v1/answer", json=body())
        assert_envelope(full, 429)
        assert "backlog" in full.json()["error"]["message"]
        assert full.headers["Retry-After"] == "2"


def test_engine_down_is_503_with_retry_after(redis: fakeredis.FakeAsyncRedis) -> None:
    with client_for(redis, FakeEngine(down=True)) as client:
        reply = client.post("/v1/answer", json=body())
        assert_envelope(reply, 503)
        assert reply.headers["Retry-After"] == "2"
        assert records(client) == []
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["components"]["vllm"]["ok"] is False


def test_routes_to_the_current_adapter_and_reloads_it_if_vllm_forgot(
    redis: fakeredis.FakeAsyncRedis, engine: FakeEngine
) -> None:
    with client_for(redis, engine) as client:
        portal = client.portal
        meta = json.dumps({"status": "promoted", "path": "/adapters/v2"})
        portal.call(redis.hset, keys.ADAPTER_VERSIONS, "2", meta)
        portal.call(redis.set, keys.ADAPTER_CURRENT, 2)
        portal.call(client.app.state.gateway.router.refresh)  # type: ignore[attr-defined]
        out = client.post("/v1/answer", json=body()).json()
    assert out["adapter_version"] == 2
    assert engine.loads == [("ttrv-v2", "/adapters/v2")]  # reconciled on vLLM's 404, once
    assert engine.calls[-1]["model"] == "ttrv-v2"


def test_unknown_routes_and_methods_use_the_envelope(client: TestClient) -> None:
    assert_envelope(client.get("/v1/nothing"), 404)
    assert_envelope(client.get("/v1/answer"), 405)


def test_feedback_scores_the_served_answer(client: TestClient) -> None:
    served = client.post("/v1/answer", json=body()).json()
    reply = client.post("/v1/feedback", json={"id": served["id"], "label": "7."})
    assert reply.json() == {"id": served["id"], "correct": True, "adapter_version": 0}
    assert client.post("/v1/feedback", json={"id": served["id"], "label": "1"}).json()["correct"] is False
    assert_envelope(client.post("/v1/feedback", json={"id": "unknown", "label": "1"}), 404, "id")
    # Each label keeps what is needed to ask any version the same question again (gate, rollback).
    redis = client.app.state.gateway.redis  # type: ignore[attr-defined]
    labels = client.portal.call(redis.xrange, keys.FEEDBACK)  # type: ignore[union-attr]
    first = {k.decode(): v.decode() for k, v in labels[0][1].items()}
    assert first["image"] == records(client)[0]["image"]
    assert first["question"] == body()["question"]
    assert first["adapter_version"] == "0"
    assert first["correct"] == "1"


def test_metrics_count_by_route_template(client: TestClient) -> None:
    client.post("/v1/answer", json=body())
    client.get("/v1/nothing/at/all")
    text = client.get("/metrics").text
    assert 'ttrv_requests_total{route="/v1/answer",status="200"} 1.0' in text
    assert 'ttrv_requests_total{route="unmatched",status="404"} 1.0' in text
    assert "ttrv_served_adapter_version 0.0" in text
    assert "ttrv_enqueue_failures_total 0.0" in text


def test_openapi_lists_both_body_types(client: TestClient) -> None:
    content = client.get("/openapi.json").json()["paths"]["/v1/answer"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}


def test_promoting_an_unknown_or_pruned_version_is_404_or_409(
    redis: fakeredis.FakeAsyncRedis, engine: FakeEngine
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with client_for(redis, engine) as client:
        assert_envelope(client.post("/v1/adapters/9/promote", headers=admin), 404, "version")
        meta = json.dumps({"status": "promoted", "path": "/adapters/v2", "pruned": True})
        client.portal.call(redis.hset, keys.ADAPTER_VERSIONS, "2", meta)
        error = assert_envelope(client.post("/v1/adapters/2/promote", headers=admin), 409, "version")
    assert "deleted by retention" in error["message"]
    assert engine.loads == [], "nothing was loaded for either"


def test_a_record_keeps_the_image_type_and_feedback_uses_the_one_correctness_rule(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    jpeg = io.BytesIO()
    Image.new("RGB", (56, 56), (200, 10, 10)).save(jpeg, format="JPEG")
    data_url = "data:image/jpeg;base64," + base64.b64encode(jpeg.getvalue()).decode()
    with client_for(redis, FakeEngine(replies=[["The answer is b."]])) as client:
        served = client.post("/v1/answer", json=body(image=data_url, options=["six", "seven"])).json()
        (record,) = records(client)
        assert record["mime"] == "image/jpeg"
        assert served["answer"] == "B"
        # A label may name the option's letter in any case, or its text.
        for label, right in (("b", True), ("Seven", True), ("(B)", True), ("six", False), ("A", False)):
            reply = client.post("/v1/feedback", json={"id": served["id"], "label": label})
            assert reply.json()["correct"] is right, label
