"""The adapter lifecycle on the real stack (Redis, vLLM, the gateway as a process): hot-swaps under a steady
replay with no failed request and every answer attributed to the version whose weights produced it, manual
and automatic rollback, and a vLLM restart survived without a manual step."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from adapter.digits.dataset import stream_split
from adapter.digits.task import PROMPT
from adapter.lifecycle import Lifecycle
from adapter.metrics import WorkerMetrics
from adapter.settings import WorkerSettings
from adapter.versions import next_version, save_version
from core import keys
from core.answers import extract_answer
from core.engine import EngineClient
from core.registry import Registry
from server.settings import GatewaySettings
from stack.gateway import gateway_env, start_gateway
from stack.ports import free_port
from stack.process import ManagedProcess
from stack.redis import start_redis
from stack.vllm import healthy
from tests.integration.conftest import VllmServer
from tests.integration.helpers import chat, digit_policy, png_bytes

ADMIN = "test-admin-token"
IMAGES = stream_split("eval", "clean", 0, seed=0)
PROBE = list(range(8))  # the images the replay asks about, again and again
GATEWAY_MAX_TOKENS = GatewaySettings().max_tokens  # references are asked exactly as the gateway asks


@dataclass
class Stack:
    redis_url: str
    api: str
    adapters: Path
    gateway: ManagedProcess


@pytest.fixture(scope="module")
def stack(vllm_server: VllmServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("lifecycle")
    port = free_port()
    redis_proc = start_redis(port, root / "redis", root / "redis.log")
    redis_url = f"redis://127.0.0.1:{port}/0"
    gateway_port = free_port()
    env = gateway_env(redis_url, vllm_server.base_url, gateway_port, {"TTRV_ADMIN_TOKEN": ADMIN,
                      "TTRV_ADAPTER_POLL_S": "0.5"})  # fmt: skip
    gateway = start_gateway(env, root / "gateway.log")
    try:
        yield Stack(redis_url, f"http://127.0.0.1:{gateway_port}", root / "adapters", gateway)
    finally:
        gateway.stop()
        redis_proc.stop()


def worker_settings(stack: Stack, vllm: VllmServer, **extra: object) -> WorkerSettings:
    values: dict[str, object] = {
        "redis_url": stack.redis_url,
        "vllm_url": vllm.base_url,
        "model_path": vllm.model_dir,
        "adapter_dir": stack.adapters,
        "swap_grace_s": 1.0,
        "max_tokens": 4,
    }
    return WorkerSettings(**{**values, **extra})


def make_version(stack: Stack, vllm: VllmServer, digit: int) -> int:
    """A registered candidate that answers `digit` to most images (`digit_policy`)."""
    policy = digit_policy(vllm.model_dir, digit, IMAGES.images[:16])

    async def register() -> int:
        client = aioredis.Redis.from_url(stack.redis_url)
        version = await next_version(client)
        path = save_version(policy, stack.adapters, version, {"parent": 0})
        await Registry(client).register(version, str(path), {"parent": 0})
        await client.aclose()
        return version

    return asyncio.run(register())


def references(vllm: VllmServer, stack: Stack, versions: list[int]) -> dict[int, list[str]]:
    """Each version's greedy answers on the replayed images, asked of vLLM directly under its name."""
    refs = {}
    with vllm.client() as http:
        for v in versions:
            name = keys.adapter_name(v, vllm.served_name)
            if v:
                http.post(
                    "/v1/load_lora_adapter",
                    json={"lora_name": name, "lora_path": str(stack.adapters / f"v{v}")},
                )
            texts = [chat(http, name, IMAGES.images[i], max_tokens=GATEWAY_MAX_TOKENS) for i in PROBE]
            refs[v] = [extract_answer(t["choices"][0]["message"]["content"]) or "" for t in texts]
    return refs


class Replay:
    """Steady answer requests from threads; each reply kept: (image, status, version, answer, Retry-After)."""

    def __init__(self, api: str, concurrency: int = 3):
        self.api = api
        self.concurrency = concurrency
        self.replies: list[tuple[int, int, int, str, str | None]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(k,)) for k in range(concurrency)]

    def _run(self, k: int) -> None:
        images = [png_bytes(IMAGES.images[i]) for i in PROBE]
        with httpx.Client(base_url=self.api, timeout=60) as http:
            n = k
            while not self._stop.is_set():
                i = n % len(PROBE)
                n += self.concurrency
                r = http.post("/v1/answer", files={"image": ("d.png", images[i], "image/png")},
                              data={"question": PROMPT})  # fmt: skip
                body = r.json()
                if r.status_code == 200:
                    self.replies.append((i, 200, body["adapter_version"], body["answer"], None))
                else:
                    self.replies.append((i, r.status_code, -1, "", r.headers.get("Retry-After")))
                time.sleep(0.02)

    def __enter__(self) -> Replay:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)


def metric(text: str, name: str) -> float:
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def test_hot_swaps_under_load_fail_no_request_and_every_answer_names_its_version(
    stack: Stack, vllm_server: VllmServer
) -> None:
    versions = [make_version(stack, vllm_server, digit) for digit in (1, 4, 7, 2, 9)]
    settings = worker_settings(stack, vllm_server)

    async def swap_all() -> list[float]:
        client = aioredis.Redis.from_url(stack.redis_url)
        engine = EngineClient(vllm_server.base_url, timeout_s=60)
        life = Lifecycle(settings, client, engine, WorkerMetrics())
        took = []
        previous = 0
        for v in versions:
            await asyncio.sleep(2.0)  # let the replay run on the current version for a while
            await life.load_candidate(v, stack.adapters / f"v{v}")
            took.append(await life.promote(v, previous))
            previous = v
        await asyncio.sleep(2.0)
        await life.aclose()
        await engine.aclose()
        await client.aclose()
        return took

    with Replay(stack.api) as replay:
        took = asyncio.run(swap_all())
    gateway_metrics = httpx.get(f"{stack.api}/metrics").text
    refs = references(vllm_server, stack, [0, *versions])
    for earlier, later in zip([0, *versions], versions, strict=False):
        assert refs[earlier] != refs[later], "two versions answer alike: the attribution check would be blind"
    failed = [r for r in replay.replies if r[1] != 200]
    assert not failed, f"requests failed during swaps: {failed[:5]}"
    seen = {version for _, _, version, _, _ in replay.replies}
    assert set(versions) <= seen, f"every promoted version served requests; saw {sorted(seen)}"
    wrong = [(i, v, a, refs[v][i]) for i, _, v, a, _ in replay.replies if a != refs[v][i]]
    assert not wrong, f"answers attributed to a version whose weights do not give them: {wrong[:5]}"
    assert metric(gateway_metrics, "ttrv_adapter_misses_total") == 0, "a request met an unloaded name"
    assert max(took) < 5.0, f"a swap took {max(took):.2f} s"


def answer(api: str, image: int) -> dict[str, object]:
    files = {"image": ("d.png", png_bytes(IMAGES.images[image]), "image/png")}
    reply = httpx.post(f"{api}/v1/answer", files=files, data={"question": PROMPT}, timeout=60)
    assert reply.status_code == 200, reply.text
    body: dict[str, object] = reply.json()
    return body


def test_manual_rollback_to_an_earlier_version_and_to_the_base_takes_effect_at_once(stack: Stack) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    listing = httpx.get(f"{stack.api}/v1/adapters").json()
    current = listing["current"]
    earlier = next(v["version"] for v in listing["versions"] if v["version"] < current and not v["pruned"])
    reply = httpx.post(f"{stack.api}/v1/adapters/{earlier}/promote", headers=admin, timeout=60)
    assert reply.status_code == 200, reply.text
    assert answer(stack.api, 0)["adapter_version"] == earlier
    after = httpx.get(f"{stack.api}/v1/adapters").json()
    assert after["history"][-1]["kind"] == "rollback"
    assert next(v for v in after["versions"] if v["version"] == current)["status"] == "rolled_back"
    assert httpx.post(f"{stack.api}/v1/adapters/0/promote", headers=admin, timeout=60).status_code == 200
    assert answer(stack.api, 1)["adapter_version"] == 0
    denied = httpx.post(f"{stack.api}/v1/adapters/{current}/promote", timeout=60)
    assert denied.status_code in (401, 403)
    assert "error" in denied.json()


def test_a_version_that_loses_accuracy_on_feedback_is_rolled_back_automatically(
    stack: Stack, vllm_server: VllmServer
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    bad = make_version(stack, vllm_server, 3)  # answers "3" to most digits: accuracy near 10%
    assert httpx.post(f"{stack.api}/v1/adapters/{bad}/promote", headers=admin, timeout=60).status_code == 200
    for i in range(20, 44):
        served = answer(stack.api, i)
        assert served["adapter_version"] == bad
        label = str(IMAGES.labels[i])
        assert (
            httpx.post(f"{stack.api}/v1/feedback", json={"id": served["id"], "label": label}).status_code
            == 200
        )

    async def check() -> tuple[int | None, float]:
        client = aioredis.Redis.from_url(stack.redis_url)
        engine = EngineClient(vllm_server.base_url, timeout_s=60)
        metrics = WorkerMetrics()
        life = Lifecycle(worker_settings(stack, vllm_server, rollback_min_labels=20), client, engine, metrics)
        await life.observe()
        went_to = await life.check_rollback(force=True)
        await life.observe()
        await life.aclose()
        await engine.aclose()
        await client.aclose()
        return went_to, metrics.rollbacks._value.get()

    went_to, rollbacks = asyncio.run(check())
    assert went_to == 0, "back to the base model, which was current before the bad version"
    assert rollbacks == 1
    assert answer(stack.api, 2)["adapter_version"] == 0
    entry = httpx.get(f"{stack.api}/v1/adapters").json()
    bad_entry = next(v for v in entry["versions"] if v["version"] == bad)
    assert bad_entry["status"] == "rolled_back"
    assert "feedback accuracy" in bad_entry["rollback_reason"]


def test_a_vllm_restart_is_survived_without_a_manual_step(stack: Stack, vllm_server: VllmServer) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    version = make_version(stack, vllm_server, 8)
    assert (
        httpx.post(f"{stack.api}/v1/adapters/{version}/promote", headers=admin, timeout=60).status_code == 200
    )
    ref = references(vllm_server, stack, [version])[version]
    proc = vllm_server.process
    with Replay(stack.api, concurrency=2) as replay:
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.proc.wait(10)  # type: ignore[union-attr]
        time.sleep(2.0)
        proc.start()  # same command, same port: what a supervisor would do
        deadline = time.monotonic() + 300
        while not healthy(vllm_server.base_url):
            assert time.monotonic() < deadline, "vLLM did not come back"
            time.sleep(0.5)
        time.sleep(3.0)
    statuses = [r[1] for r in replay.replies]
    assert set(statuses) <= {200, 503}, set(statuses)
    down = [r for r in replay.replies if r[1] == 503]
    assert down, "no request was made while vLLM was down"
    assert all(r[4] is not None for r in down), "503 without Retry-After"
    last = replay.replies[-10:]
    assert all(r[1] == 200 and r[2] == version for r in last), last
    assert all(a == ref[i] for i, _, _, a, _ in last), "after the restart, answers are the current version's"
