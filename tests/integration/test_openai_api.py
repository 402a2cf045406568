"""The OpenAI-compatible API on the real stack, driven by the real `openai` package as applications use it:
chat completions (plain, n > 1, streamed, sync and async), model names, the SDK's exception classes, and
the requests recorded for adaptation, trained on by a worker round, and a promotion seen by the next call."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
from PIL import Image

from adapter.digits.dataset import load_split
from adapter.digits.task import PROMPT
from adapter.lora import LoraSpec
from adapter.policy import Policy
from adapter.settings import WorkerSettings
from adapter.versions import next_version, save_version
from adapter.worker import build_worker
from core import keys
from stack.gateway import gateway_env, start_gateway
from stack.ports import free_port
from stack.process import ManagedProcess
from stack.redis import start_redis
from tests.integration.conftest import VllmServer
from tests.integration.helpers import digit_policy, png_bytes

KEY = "oai-key"
IMAGES = load_split("eval").images


@dataclass
class Stack:
    redis_url: str
    api: str  # the gateway's base URL
    limited_api: str  # a second gateway with a tight rate limit
    adapters: Path

    def client(self, api_key: str = KEY, **options: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.api}/v1", api_key=api_key, max_retries=0, **options)


@pytest.fixture(scope="module")
def stack(vllm_server: VllmServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("openai")
    port = free_port()
    redis_proc = start_redis(port, root / "redis", root / "redis.log")
    redis_url = f"redis://127.0.0.1:{port}/0"
    procs: list[ManagedProcess] = [redis_proc]
    urls = []
    for extra in ({}, {"TTRV_RATE_LIMIT_PER_S": "0.2", "TTRV_RATE_LIMIT_BURST": "1"}):
        gw_port = free_port()
        env = gateway_env(redis_url, vllm_server.base_url, gw_port,
                          {"TTRV_API_KEYS": f'["{KEY}"]', "TTRV_ADAPTER_POLL_S": "0.5", **extra})  # fmt: skip
        procs.append(start_gateway(env, root / f"gateway-{gw_port}.log"))
        urls.append(f"http://127.0.0.1:{gw_port}")
    try:
        yield Stack(redis_url, urls[0], urls[1], root / "adapters")
    finally:
        for proc in reversed(procs):
            proc.stop()


def data_url(i: int) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(IMAGES[i])).decode()


def messages(i: int) -> list[Any]:
    content = [{"type": "image_url", "image_url": {"url": data_url(i)}}, {"type": "text", "text": PROMPT}]
    return [{"role": "user", "content": content}]


def answer_route(stack: Stack, i: int) -> dict[str, Any]:
    body = {"image": base64.b64encode(png_bytes(IMAGES[i])).decode(), "question": PROMPT}
    reply = httpx.post(f"{stack.api}/v1/answer", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


def recorded(stack: Stack) -> dict[str, dict[str, str]]:
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    return {f["id"]: f for _, f in client.xrange(keys.REQUESTS)}


def test_a_chat_completion_answers_as_v1_answer_does_and_is_recorded_once(stack: Stack) -> None:
    client = stack.client()
    for i in range(6):
        completion = client.chat.completions.create(model="ttrv", messages=messages(i), temperature=0)
        assert completion.choices[0].message.content == answer_route(stack, i)["text"]
        assert completion.model == "base"  # nothing promoted yet: the base model answered
        assert completion.usage is not None
        assert completion.usage.total_tokens > 0
        records = recorded(stack)
        assert records[completion.id]["question"] == PROMPT
        assert records[completion.id]["adapter_version"] == "0"
    assert sum(1 for r in recorded(stack) if r.startswith("chatcmpl-")) == 6  # once each


def test_n_samples_and_a_stream_that_concatenates_to_the_plain_answer(stack: Stack) -> None:
    client = stack.client()
    several = client.chat.completions.create(model="ttrv", messages=messages(7), n=4, temperature=1.0, seed=3)
    assert len(several.choices) == 4
    assert recorded(stack)[several.id]["samples"] == "4"
    plain = client.chat.completions.create(model="ttrv", messages=messages(8), temperature=0)
    chunks = list(
        client.chat.completions.create(
            model="ttrv",
            messages=messages(8),
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert {c.id for c in chunks} == {chunks[0].id}
    assert chunks[-1].usage is not None, "the usage chunk ends the stream"
    assert chunks[-1].usage.total_tokens > 0
    assert recorded(stack)[chunks[0].id]["text"] == text


def test_the_async_client_works_the_same(stack: Stack) -> None:
    async def scenario() -> list[str]:
        async with openai.AsyncOpenAI(base_url=f"{stack.api}/v1", api_key=KEY, max_retries=0) as client:
            replies = await asyncio.gather(
                *(
                    client.chat.completions.create(model="ttrv", messages=messages(i), temperature=0)
                    for i in range(4)
                )
            )
            streamed = await client.chat.completions.create(
                model="ttrv", messages=messages(0), temperature=0, stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in streamed if c.choices])
            return [r.choices[0].message.content or "" for r in replies] + [text]

    answers = asyncio.run(scenario())
    assert answers[:4] == [answer_route(stack, i)["text"] for i in range(4)]
    assert answers[4] == answers[0]


def test_the_sdks_exception_classes(stack: Stack) -> None:
    with pytest.raises(openai.AuthenticationError):
        stack.client(api_key="wrong").chat.completions.create(model="ttrv", messages=messages(0))
    with pytest.raises(openai.BadRequestError):
        stack.client().chat.completions.create(model="ttrv", messages=messages(0), temperature=7)
    remote = [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}
    ]
    with pytest.raises(openai.BadRequestError, match="remote image URLs are off"):
        stack.client().chat.completions.create(model="ttrv", messages=remote)
    with pytest.raises(openai.NotFoundError):
        stack.client().chat.completions.create(model="gpt-4o", messages=messages(0))
    # vLLM's own refusal (a prompt longer than the model's context) is the client's error, with its reason.
    long = [{"role": "user", "content": [{"type": "text", "text": "seven " * 600}]}]
    with pytest.raises(openai.BadRequestError, match="the model cannot take this request"):
        stack.client().chat.completions.create(model="ttrv", messages=long)
    limited = openai.OpenAI(base_url=f"{stack.limited_api}/v1", api_key=KEY, max_retries=0)
    limited.chat.completions.create(model="ttrv", messages=messages(0), max_tokens=2)  # the one token
    with pytest.raises(openai.RateLimitError):
        limited.chat.completions.create(model="ttrv", messages=messages(0), max_tokens=2)


def test_records_from_the_sdk_are_trained_on_and_a_promotion_reaches_the_next_call(
    stack: Stack, vllm_server: VllmServer
) -> None:
    client = stack.client()
    ids = [client.chat.completions.create(model="ttrv", messages=messages(20 + i)).id for i in range(12)]

    async def one_round() -> int:
        settings = WorkerSettings(
            redis_url=stack.redis_url, vllm_url=vllm_server.base_url, model_path=vllm_server.model_dir,
            adapter_dir=stack.adapters, samples=8, keep=4, max_tokens=4, lr=3e-3, replay_share=0.0,
            gate_share=0.0, swap_grace_s=0.5, consumer_name="oai",
        )  # fmt: skip
        worker = build_worker(settings)
        try:
            await worker.consumer.start()
            fresh = worker.consumer.fresh() or await worker.consumer.poll(block_ms=0)
            await worker.run_round(fresh)
            return int(await worker.redis.get(keys.ADAPTER_NEXT_VERSION) or 0)
        finally:
            await worker.aclose()

    version = asyncio.run(one_round())
    trained = json.loads((stack.adapters / f"v{version}" / "metadata.json").read_text())["record_ids"]
    assert set(ids) <= set(trained), "the round trained on the chat completions"

    # A version trained to answer one digit, promoted by the worker's own path: the next call sees it.
    policy = digit_policy(vllm_server.model_dir, 4, IMAGES[:16])

    async def promote() -> int:
        settings = WorkerSettings(redis_url=stack.redis_url, vllm_url=vllm_server.base_url,
                                  adapter_dir=stack.adapters, swap_grace_s=0.5)  # fmt: skip
        worker = build_worker(settings)
        try:
            new = await next_version(worker.redis)
            path = save_version(policy, stack.adapters, new, {"parent": 0})
            await worker.lifecycle.registry.register(new, str(path), {"parent": 0})
            await worker.lifecycle.load_candidate(new, path)
            await worker.lifecycle.promote(new, await worker.lifecycle.registry.current())
            return int(new)
        finally:
            await worker.aclose()

    promoted = asyncio.run(promote())
    name = keys.adapter_name(promoted, "base")
    after = client.chat.completions.with_raw_response.create(
        model="ttrv", messages=messages(0), temperature=0
    )
    assert after.headers["X-TTRV-Adapter-Version"] == str(promoted), "gateways follow a promotion at once"
    assert after.parse().model == name
    listed = [m.id for m in client.models.list()]
    assert listed[:2] == ["ttrv", "base"]
    assert name in listed
    pinned = [
        client.chat.completions.create(model=name, messages=messages(i), temperature=0) for i in range(8)
    ]
    base = [
        client.chat.completions.create(model="base", messages=messages(i), temperature=0) for i in range(8)
    ]
    assert {r.model for r in pinned} == {name}
    assert {r.model for r in base} == {"base"}
    fours = [r.choices[0].message.content for r in pinned].count("4")
    assert fours >= 6, "the pinned version answers as it was trained to (4 to most of its training images)"
    assert [r.choices[0].message.content for r in base].count("4") < fours, "base and version differ"
    assert client.models.retrieve(name).id == name


def test_an_exported_version_answers_outside_the_server_as_it_does_inside(
    stack: Stack, vllm_server: VllmServer, tmp_path: Path
) -> None:
    client = stack.client()
    name = next(m.id for m in reversed(list(client.models.list())) if m.id.startswith("ttrv-v"))
    version = keys.version_of(name, "base")
    assert version is not None
    served = [
        client.chat.completions.create(model=name, messages=messages(i), temperature=0)
        .choices[0]
        .message.content
        for i in range(8)
    ]
    env = {
        **os.environ,
        "TTRV_REDIS_URL": stack.redis_url,
        "TTRV_ADAPTER_DIR": str(stack.adapters),
        "TTRV_MODEL_PATH": str(vllm_server.model_dir),
    }
    for merge in (False, True):
        out = tmp_path / ("merged" if merge else "peft")
        argv = [
            sys.executable,
            "-m",
            "stack.cli",
            "export",
            str(version),
            str(out),
            *(["--merge"] if merge else []),
        ]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"ttrv-v{version}" in (out / "README.md").read_text()
        # transformers + PEFT, no server: the adapter on the base model, or the merged model as it is.
        policy = Policy(out, LoraSpec()) if merge else Policy(vllm_server.model_dir, LoraSpec(), adapter=out)
        prompts = [policy.prompt(Image.fromarray(IMAGES[i]), PROMPT) for i in range(8)]
        outside = [policy.decode(c[0]) for c in policy.sample(prompts, 1, 0.0, 4)]
        assert outside == served, f"{'merged' if merge else 'PEFT'} export answers differently"
    entry = json.loads(redis.Redis.from_url(stack.redis_url).hget(keys.ADAPTER_VERSIONS, str(version)))
    assert entry["exported"] is True, "kept from retention"
    assert len(entry["exported_to"]) == 2
