"""The adaptation worker on the real Redis and the real vLLM: one round makes a servable version whose
answers differ from the base, records are acknowledged only after it, and a worker killed mid-round loses
nothing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from adapter.digits.dataset import stream_split
from adapter.digits.task import PROMPT
from adapter.gate import GateDecision
from adapter.round import RoundStats
from adapter.settings import WorkerSettings
from adapter.versions import next_version, save_version
from adapter.worker import build_worker
from core import keys
from core.registry import Registry
from core.wire import AnswerResponse
from server.metrics import GatewayMetrics
from server.queue import Record, RecordLog
from stack.ports import free_port
from stack.redis import start_redis
from tests.integration.conftest import VllmServer
from tests.integration.helpers import greedy_answer, png_bytes, train_to_answer

ROUND = 24
GATED_ROUND = 32  # 8 of them held back for the gate


@pytest.fixture(scope="module")
def worker_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis of their own: version numbers run on across this module's tests, as in one deployment."""
    root = tmp_path_factory.mktemp("worker-redis")
    port = free_port()
    proc = start_redis(port, root / "data", root / "redis.log")
    yield f"redis://127.0.0.1:{port}/0"
    proc.stop()


def write_records(redis_url: str, first: int, count: int, tag: str) -> list[str]:
    """Records as the gateway writes them, for shifted digits (contrast) the base model often gets wrong."""
    digits = stream_split("adapt", "contrast", 4, seed=0)

    async def write() -> list[str]:
        client = aioredis.Redis.from_url(redis_url)
        log = RecordLog(client, GatewayMetrics(), ttl_s=3600, maxlen=100_000, buffer_max=10)
        await log.ensure_group()
        ids = []
        for i in range(first, first + count):
            image = png_bytes(digits.images[i])
            response = AnswerResponse(
                id=f"{tag}-{i}", answer="0", text="0", adapter_version=0, confidence=None, latency_ms=1.0
            )
            await log.write(
                Record(
                    response,
                    image,
                    hashlib.sha256(image).hexdigest(),
                    PROMPT,
                    None,
                    "default",
                    1,
                    time.time(),
                )
            )
            ids.append(response.id)
        await client.aclose()
        return ids

    return asyncio.run(write())


def settings(redis_url: str, vllm: VllmServer, adapter_dir: Path, **extra: object) -> WorkerSettings:
    values: dict[str, object] = {
        "redis_url": redis_url,
        "vllm_url": vllm.base_url,
        "model_path": vllm.model_dir,
        "adapter_dir": adapter_dir,
        "round_min_records": ROUND,
        "samples": 16,
        "keep": 8,
        "max_tokens": 4,
        "lr": 3e-3,  # large on purpose: one short round must visibly move the answers
        "replay_share": 0.0,
        "swap_grace_s": 0.5,
    }
    return WorkerSettings(**{**values, **extra})


def pending(redis_url: str, consumer: str | None = None) -> int:
    client = redis.Redis.from_url(redis_url)
    if consumer is None:
        return int(client.xpending(keys.REQUESTS, keys.WORKER_GROUP)["pending"])
    rows = client.xpending_range(keys.REQUESTS, keys.WORKER_GROUP, "-", "+", 1000, consumername=consumer)
    return len(rows)


def test_one_round_makes_a_served_version_and_acks_only_after_it(
    worker_redis: str, vllm_server: VllmServer, tmp_path: Path
) -> None:
    ids = write_records(worker_redis, 0, ROUND, "round")

    async def scenario() -> tuple[int, int, RoundStats]:
        worker = build_worker(settings(worker_redis, vllm_server, tmp_path, consumer_name="w-round"))
        try:
            await worker.consumer.start()
            records = worker.consumer.fresh() or await worker.consumer.poll(block_ms=0)
            held = pending(worker_redis, "w-round")
            stats = await worker.run_round(records)
            return held, pending(worker_redis), stats
        finally:
            await worker.aclose()

    held, after, stats = asyncio.run(scenario())
    assert stats.steps > 0, "the round had nothing to learn from"
    assert held == ROUND, "records must stay pending while the round runs"
    assert after == 0, "a committed round acknowledges its records"
    client = redis.Redis.from_url(worker_redis)
    version = int(client.get(keys.ADAPTER_CURRENT) or 0)
    assert version >= 1
    folder = tmp_path / f"v{version}"
    assert (folder / "adapter_model.safetensors").exists()
    assert (folder / "metadata.json").exists()
    with vllm_server.client() as http:
        name = keys.adapter_name(version, vllm_server.served_name)
        assert name in {m["id"] for m in http.get("/v1/models").json()["data"]}
        images = stream_split("adapt", "contrast", 4, seed=0).images[:48]
        base = [greedy_answer(http, vllm_server.served_name, im) for im in images]
        adapted = [greedy_answer(http, name, im) for im in images]
    assert sum(a != b for a, b in zip(base, adapted, strict=True)) > 0, (
        "the new version answers like the base"
    )
    assert sorted(ids) == sorted(json.loads((folder / "metadata.json").read_text())["record_ids"])


def test_worker_killed_mid_round_loses_no_record(
    worker_redis: str, vllm_server: VllmServer, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(worker_redis)
    version_before = int(client.get(keys.ADAPTER_NEXT_VERSION) or 0)
    ids = write_records(worker_redis, 100, ROUND, "kill")
    env = {
        **os.environ,
        "TTRV_REDIS_URL": worker_redis,
        "TTRV_VLLM_URL": vllm_server.base_url,
        "TTRV_MODEL_PATH": str(vllm_server.model_dir),
        "TTRV_ADAPTER_DIR": str(tmp_path),
        "TTRV_ROUND_MIN_RECORDS": str(ROUND),
        "TTRV_SAMPLES": "16",
        "TTRV_KEEP": "8",
        "TTRV_MAX_TOKENS": "4",
        "TTRV_REPLAY_SHARE": "0",
        "TTRV_CLAIM_IDLE_MS": "500",
        "TTRV_METRICS_PORT": str(free_port()),
        "TTRV_CONSUMER_NAME": "w-doomed",
    }
    doomed = subprocess.Popen([sys.executable, "-m", "adapter"], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and pending(worker_redis, "w-doomed") < ROUND:
            assert doomed.poll() is None, "the worker died on its own"
            time.sleep(0.05)
        os.killpg(doomed.pid, signal.SIGKILL)  # it holds every record and has committed nothing
        doomed.wait(10)
    finally:
        if doomed.poll() is None:
            os.killpg(doomed.pid, signal.SIGKILL)
    assert int(client.get(keys.ADAPTER_NEXT_VERSION) or 0) == version_before, (
        "killed after the round committed"
    )
    assert pending(worker_redis, "w-doomed") == ROUND

    # Another worker takes the dead one's records over once they have been idle for claim_idle_ms.
    successor = subprocess.Popen(
        [sys.executable, "-m", "adapter"],
        env={**env, "TTRV_CONSUMER_NAME": "w-successor"},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while (
            time.monotonic() < deadline and int(client.get(keys.ADAPTER_NEXT_VERSION) or 0) == version_before
        ):
            assert successor.poll() is None, "the successor died"
            time.sleep(0.2)
        while time.monotonic() < deadline and pending(worker_redis) > 0:
            time.sleep(0.2)
        # The worker's own /metrics reports the round from real events.
        metrics = httpx.get(f"http://127.0.0.1:{env['TTRV_METRICS_PORT']}/metrics", timeout=5).text
        assert 'ttrv_adaptation_rounds_total{result="promoted"} 1.0' in metrics
        assert f"ttrv_rollouts_total {ROUND * 16}.0" in metrics
        assert f"ttrv_adapter_version {version_before + 1}.0" in metrics
    finally:
        os.killpg(successor.pid, signal.SIGTERM)
        successor.wait(15)
    version = int(client.get(keys.ADAPTER_NEXT_VERSION) or 0)
    assert version == version_before + 1
    used = json.loads((tmp_path / f"v{version}" / "metadata.json").read_text())["record_ids"]
    assert sorted(used) == sorted(ids), "every record of the killed round is used, none lost"
    assert len(used) == len(set(used)), "no record is trained twice inside one version"
    assert pending(worker_redis) == 0
    with httpx.Client(base_url=vllm_server.base_url) as http:
        assert keys.adapter_name(version, "base") in {m["id"] for m in http.get("/v1/models").json()["data"]}


def test_a_round_with_the_gate_stores_its_decision(
    worker_redis: str, vllm_server: VllmServer, tmp_path: Path
) -> None:
    write_records(worker_redis, 200, GATED_ROUND, "gated")

    async def scenario() -> None:
        worker = build_worker(settings(worker_redis, vllm_server, tmp_path, consumer_name="w-gated", lr=3e-4))
        try:
            await worker.consumer.start()
            records = worker.consumer.fresh() or await worker.consumer.poll(block_ms=0)
            await worker.run_round(records[:GATED_ROUND])
        finally:
            await worker.aclose()

    asyncio.run(scenario())
    client = redis.Redis.from_url(worker_redis)
    version = int(client.get(keys.ADAPTER_NEXT_VERSION))
    entry = json.loads(client.hget(keys.ADAPTER_VERSIONS, str(version)))
    assert entry["status"] in ("promoted", "rejected")
    assert entry["metrics"]["gate_records"] == 8.0
    assert entry["held_out"] == 8
    assert len(entry["record_ids"]) == GATED_ROUND - 8
    if entry["status"] == "rejected":
        assert entry["reasons"]


def test_a_candidate_trained_to_one_constant_answer_is_rejected(
    worker_redis: str, vllm_server: VllmServer, tmp_path: Path
) -> None:
    write_records(worker_redis, 300, 16, "collapse")

    async def scenario() -> GateDecision:
        worker = build_worker(settings(worker_redis, vllm_server, tmp_path, consumer_name="w-collapse"))
        try:
            policy = worker._load_policy(0, None)
            # Supervised steps toward answering "1" to every image: the collapse the paper's runs showed.
            images = stream_split("adapt", "contrast", 4, seed=0).images[:32]
            train_to_answer(policy, 1, images, steps=40)
            version = await next_version(worker.redis)
            path = save_version(policy, tmp_path, version, {"parent": 0})
            await Registry(worker.redis).register(version, str(path), {"parent": 0})
            await worker.consumer.start()
            held_out = worker.consumer.fresh() or await worker.consumer.poll(block_ms=0)
            current = [await worker._rollout(policy, vllm_server.served_name, r) for r in held_out]
            return await worker.gate(version, path, held_out, [r for r in current if r is not None])
        finally:
            await worker.aclose()

    decision = asyncio.run(scenario())
    assert not decision.passed
    assert any("collapse onto one answer" in reason for reason in decision.reasons), decision.reasons


def test_a_paused_worker_runs_no_round(worker_redis: str, vllm_server: VllmServer, tmp_path: Path) -> None:
    write_records(worker_redis, 350, ROUND, "paused")
    client = redis.Redis.from_url(worker_redis)
    client.set(keys.ADAPTATION_PAUSED, "1")  # what POST /v1/adaptation/pause sets

    async def scenario() -> RoundStats | None:
        worker = build_worker(settings(worker_redis, vllm_server, tmp_path, consumer_name="w-paused"))
        try:
            await worker.consumer.start()
            return await worker.step(block_ms=0)
        finally:
            await worker.aclose()

    try:
        assert asyncio.run(scenario()) is None
        assert pending(worker_redis, "w-paused") == ROUND, "paused: records are held, not trained on or acked"
    finally:
        client.delete(keys.ADAPTATION_PAUSED)
