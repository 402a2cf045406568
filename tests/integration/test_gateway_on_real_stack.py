"""The gateway as a real process, on the real Redis and the real vLLM: answers, records, every error status,
idempotency, and a Redis outage in the middle of a run."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
from PIL import Image

from adapter.digits.dataset import load_split
from adapter.digits.task import PROMPT
from core import keys
from stack.gateway import gateway_env, start_gateway
from stack.ports import free_port
from stack.redis import start_redis
from tests.integration.conftest import RedisServer, VllmServer
from tests.integration.helpers import png_bytes

KEY, ADMIN = "it-key", "it-admin"
AUTH = {"Authorization": f"Bearer {KEY}"}
SECRETS = {"TTRV_API_KEYS": f'["{KEY}"]', "TTRV_ADMIN_TOKEN": ADMIN}


def launch(tmp: Path, redis_url: str, vllm_url: str, **extra: str) -> tuple[str, object]:
    port = free_port()
    env = gateway_env(redis_url, vllm_url, port, {**SECRETS, **extra})
    proc = start_gateway(env, tmp / f"gateway-{port}.log")
    return f"http://127.0.0.1:{port}", proc


@pytest.fixture(scope="module")
def gateway(
    redis_server: RedisServer, vllm_server: VllmServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    url, proc = launch(tmp_path_factory.mktemp("gw"), redis_server.url, vllm_server.base_url)
    yield url
    proc.stop()  # type: ignore[attr-defined]


def digit_body(i: int, **fields: object) -> dict[str, object]:
    image = load_split("eval").images[i]
    return {"image": base64.b64encode(png_bytes(image)).decode(), "question": PROMPT, **fields}


def stream_ids(redis_url: str) -> list[str]:
    client = redis.Redis.from_url(redis_url)
    return [fields[b"id"].decode() for _, fields in client.xrange(keys.REQUESTS)]


def test_answers_digits_and_records_each_request(gateway: str, redis_server: RedisServer) -> None:
    digits = load_split("eval")
    before = len(stream_ids(redis_server.url))
    answered = []
    with httpx.Client(base_url=gateway, headers=AUTH, timeout=60) as client:
        for i in range(30):
            reply = client.post("/v1/answer", json=digit_body(i))
            assert reply.status_code == 200, reply.text
            answered.append(reply.json())
        for i in range(30, 35):  # multipart, as `curl -F image=@x.png -F question=...` sends it
            files = {"image": ("digit.png", png_bytes(digits.images[i]), "image/png")}
            reply = client.post("/v1/answer", files=files, data={"question": PROMPT})
            assert reply.status_code == 200, reply.text
            answered.append(reply.json())
    accuracy = np.mean([a["answer"] == str(y) for a, y in zip(answered, digits.labels, strict=False)])
    assert accuracy >= 0.85, accuracy
    assert all(a["adapter_version"] == 0 for a in answered)
    ids = stream_ids(redis_server.url)
    assert len(ids) - before == len(answered)
    assert ids[before:] == [a["id"] for a in answered]


def test_same_request_id_twice_gives_one_record_and_the_same_answer(
    gateway: str, redis_server: RedisServer
) -> None:
    with httpx.Client(base_url=gateway, headers=AUTH, timeout=60) as client:
        first = client.post("/v1/answer", json=digit_body(3, request_id="retry-me-1"))
        # Same id, different sampling: the first answer must come back, not a new one.
        second = client.post("/v1/answer", json=digit_body(3, request_id="retry-me-1", samples=8))
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert stream_ids(redis_server.url).count("retry-me-1") == 1


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height)).save(out, format="PNG")
    return out.getvalue()


def check_envelope(reply: httpx.Response, status: int) -> None:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["code"] == status
    assert error["message"]
    assert "Traceback" not in reply.text


def test_every_error_status_from_a_real_request(
    gateway: str, redis_server: RedisServer, vllm_server: VllmServer, tmp_path: Path
) -> None:
    with httpx.Client(base_url=gateway, headers=AUTH, timeout=60) as client:
        check_envelope(client.post("/v1/answer", json={**digit_body(0), "image": "%%%"}), 400)
        bomb = base64.b64encode(_png(4100, 4100)).decode()  # tiny file, 16.8 M pixels
        check_envelope(client.post("/v1/answer", json={**digit_body(0), "image": bomb}), 413)
        huge = base64.b64encode(b"\0" * (9 * 1024 * 1024)).decode()
        check_envelope(client.post("/v1/answer", json={**digit_body(0), "image": huge}), 413)
        check_envelope(client.post("/v1/answer", content=b"hi", headers={"Content-Type": "text/plain"}), 415)
        check_envelope(client.post("/v1/answer", json={"question": PROMPT}), 422)
        check_envelope(
            client.post("/v1/answer", json=digit_body(0), headers={"Authorization": "Bearer no"}), 401
        )
        check_envelope(client.post("/v1/adaptation/pause"), 403)
    tmp = tmp_path
    # 429: a gateway with a rate limit of one request per 10 s.
    url, proc = launch(
        tmp, redis_server.url, vllm_server.base_url, TTRV_RATE_LIMIT_PER_S="0.1", TTRV_RATE_LIMIT_BURST="1"
    )
    try:
        with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
            assert client.post("/v1/answer", json=digit_body(0)).status_code == 200
            limited = client.post("/v1/answer", json=digit_body(0))
            check_envelope(limited, 429)
            assert int(limited.headers["Retry-After"]) >= 1
    finally:
        proc.stop()  # type: ignore[attr-defined]
    # 503: an engine that is not there, and a Redis that is not there.
    dead = f"http://127.0.0.1:{free_port()}"
    url, proc = launch(tmp, f"redis://127.0.0.1:{free_port()}/0", dead)
    try:
        with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
            down = client.post("/v1/answer", json=digit_body(0))
            check_envelope(down, 503)
            assert down.headers["Retry-After"]
            no_redis = client.post("/v1/feedback", json={"id": "x", "label": "1"})
            check_envelope(no_redis, 503)
            assert client.get("/ready").status_code == 503
    finally:
        proc.stop()  # type: ignore[attr-defined]


def test_redis_down_mid_run_answers_keep_coming_and_records_arrive_later(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    port = free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    data = tmp_path / "redis-data"
    store = start_redis(port, data, tmp_path / "redis.log")
    url, gateway = launch(tmp_path, redis_url, vllm_server.base_url)
    answered: list[str] = []
    try:
        with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
            for i in range(8):
                answered.append(client.post("/v1/answer", json=digit_body(i)).json()["id"])
            store.stop()
            for i in range(8, 20):
                reply = client.post("/v1/answer", json=digit_body(i))
                assert reply.status_code == 200, reply.text  # served although Redis is down
                answered.append(reply.json()["id"])
            ready = client.get("/ready")
            assert ready.status_code == 503
            assert ready.json()["components"]["redis"]["ok"] is False
            assert "ttrv_record_buffer_length 12.0" in client.get("/metrics").text
            store = start_redis(
                port, data, tmp_path / "redis.log"
            )  # same folder: AOF brings back the first 8
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len(stream_ids(redis_url)) < len(answered):
                time.sleep(0.25)
            assert stream_ids(redis_url) == answered
            assert "ttrv_record_buffer_length 0.0" in client.get("/metrics").text
            assert "ttrv_enqueue_failures_total 0.0" in client.get("/metrics").text
    finally:
        gateway.stop()  # type: ignore[attr-defined]
        store.stop()
