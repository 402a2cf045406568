"""The gateway-overhead benchmark's measurement: request bodies, interleaved blocks on both paths, and what
the gateway and the local processes report about the time and CPU they spent meanwhile.

`plan_levels` says what each concurrency level sends; `measure_level` runs one level on a running stack and
returns its blocks with the gateway's in-app time and the CPU per request; `bench.overhead_stats` turns them
into numbers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from bench.cpu import cpu_snapshot, other_busy_cores
from bench.local import LocalStack
from core.chat import image_chat_body
from stack.vllm import SERVED_NAME

MAX_TOKENS = 32  # the gateway's default TTRV_MAX_TOKENS; pinned in its environment so both bodies agree
PATHS = ("direct", "gateway")
JSON_HEADERS = {"content-type": "application/json"}


def default_requests(concurrency: int) -> int:
    """Requests per path at one concurrency when none are given."""
    return 300 if concurrency <= 1 else 600


def default_block(concurrency: int) -> int:
    """Requests per block: at least 20, and 4 rounds of `concurrency` so ramp-up and drain stay small."""
    return max(20, 4 * concurrency)


@dataclass(frozen=True)
class Endpoints:
    direct_url: str  # vLLM's /v1/chat/completions
    gateway_url: str  # the gateway's /v1/answer
    gateway_metrics_url: str | None = None  # its /metrics: time spent inside the app, for the breakdown
    process_groups: tuple[tuple[str, int], ...] = ()  # (name, process group) of local processes: CPU use


def endpoints_of(stack: LocalStack) -> Endpoints:
    return Endpoints(
        f"{stack.vllm_url}/v1/chat/completions",
        f"{stack.gateway_url}/v1/answer",
        f"{stack.gateway_url}/metrics",
        stack.process_groups,
    )


@dataclass(frozen=True)
class Payloads:
    """JSON bodies per image for both paths, encoded once so that the client's encoding is never timed."""

    direct: list[bytes]
    gateway: list[bytes]

    def __len__(self) -> int:
        return len(self.direct)

    def bodies(self, path: str) -> list[bytes]:
        return self.direct if path == "direct" else self.gateway


def build_payloads(pngs: Sequence[bytes], question: str) -> Payloads:
    """The direct body is the JSON object the gateway sends vLLM for `{"image", "question"}`."""
    options: dict[str, Any] = {"mime": "image/png", "n": 1, "temperature": 0.0, "priority": 0}
    direct = [
        json.dumps(image_chat_body(SERVED_NAME, png, question, max_tokens=MAX_TOKENS, **options)).encode()
        for png in pngs
    ]
    gateway = [
        json.dumps({"image": base64.b64encode(png).decode("ascii"), "question": question}).encode()
        for png in pngs
    ]
    return Payloads(direct, gateway)


@dataclass(frozen=True)
class Reply:
    image: int
    latency_s: float
    status: int  # HTTP status; 0 when no reply came (connection error, timeout)
    body: bytes

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(frozen=True)
class Block:
    replies: list[Reply]
    wall_s: float

    def ok_latencies_s(self) -> np.ndarray:
        return np.array([r.latency_s for r in self.replies if r.ok], dtype=np.float64)


async def _send(client: httpx.AsyncClient, url: str, body: bytes, image: int) -> Reply:
    started = time.perf_counter()
    try:
        reply = await client.post(url, content=body, headers=JSON_HEADERS)
    except httpx.HTTPError:
        return Reply(image, time.perf_counter() - started, 0, b"")
    return Reply(image, time.perf_counter() - started, reply.status_code, reply.content)


async def run_block(
    client: httpx.AsyncClient, url: str, bodies: Sequence[bytes], images: Sequence[int], concurrency: int
) -> Block:
    """Send one request per image with `concurrency` requests in flight (closed loop); time the block."""
    pending = iter(images)
    replies: list[Reply] = []

    async def worker() -> None:
        for image in pending:  # shared iterator: each worker takes the next image when its reply is in
            replies.append(await _send(client, url, bodies[image], image))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(images)))))
    return Block(replies, time.perf_counter() - started)


@dataclass(frozen=True)
class LevelPlan:
    concurrency: int
    requests: int  # per path
    block: int
    warmup: int  # per path


ANSWER_ROUTE_LABEL = 'route="/v1/answer"'


async def app_time(client: httpx.AsyncClient, url: str | None) -> tuple[float, float] | None:
    """Sum (s) and count of the gateway's `ttrv_request_duration_seconds` for /v1/answer, from /metrics."""
    if url is None:
        return None
    try:
        text = (await client.get(url)).text
    except httpx.HTTPError:
        return None
    found: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        for part in ("sum", "count"):
            if name == f"ttrv_request_duration_seconds_{part}{{{ANSWER_ROUTE_LABEL}}}":
                found[part] = float(value)
    return (found["sum"], found["count"]) if len(found) == 2 else None


def cpu_per_request_ms(
    before: dict[str, float | None], after: dict[str, float | None], requests: dict[str, int]
) -> dict[str, float]:
    """CPU ms per request: vLLM and the client per request of either path, the rest per gateway request."""
    out: dict[str, float] = {}
    for name, start in before.items():
        end = after.get(name)
        if start is None or end is None or name == "machine":
            continue
        n = requests["both"] if name in ("vllm", "client") else requests["gateway"]
        out[name] = round(1000 * (end - start) / max(n, 1), 3)
    return out


@dataclass(frozen=True)
class LevelData:
    blocks: dict[str, list[Block]]
    app_ms_mean: float | None  # mean time inside the gateway app (metrics middleware) over measured blocks
    cpu_ms: dict[str, float]  # CPU per request by process, over the measured blocks
    other_cores: float | None  # cores busy with other work meanwhile (noise)


async def measure_level(
    endpoints: Endpoints, payloads: Payloads, plan: LevelPlan, first_image: int, timeout_s: float
) -> LevelData:
    """Warm both paths up, then run the interleaved blocks; returns the measured blocks per path."""
    urls = {"direct": endpoints.direct_url, "gateway": endpoints.gateway_url}
    limits = httpx.Limits(max_connections=plan.concurrency, max_keepalive_connections=plan.concurrency)
    n = len(payloads)
    blocks: dict[str, list[Block]] = {path: [] for path in PATHS}
    async with (
        httpx.AsyncClient(timeout=timeout_s, limits=limits) as direct,
        httpx.AsyncClient(timeout=timeout_s, limits=limits) as gateway,
    ):
        clients = {"direct": direct, "gateway": gateway}
        warm = [(first_image + i) % n for i in range(plan.warmup)]
        for path in PATHS:
            await run_block(clients[path], urls[path], payloads.bodies(path), warm, plan.concurrency)
        start = first_image + plan.warmup
        before = await app_time(gateway, endpoints.gateway_metrics_url)
        cpu_before, measure_started = cpu_snapshot(endpoints.process_groups), time.perf_counter()
        for k, lo in enumerate(range(0, plan.requests, plan.block)):
            images = [(start + i) % n for i in range(lo, min(lo + plan.block, plan.requests))]
            for path in PATHS if k % 2 == 0 else PATHS[::-1]:
                block = await run_block(
                    clients[path], urls[path], payloads.bodies(path), images, plan.concurrency
                )
                blocks[path].append(block)
        cpu_after, measure_s = cpu_snapshot(endpoints.process_groups), time.perf_counter() - measure_started
        after = await app_time(gateway, endpoints.gateway_metrics_url)
    app_ms_mean = None
    if before is not None and after is not None and after[1] > before[1]:
        app_ms_mean = round(1000 * (after[0] - before[0]) / (after[1] - before[1]), 3)
    counts = {"gateway": plan.requests, "both": 2 * plan.requests}
    return LevelData(
        blocks,
        app_ms_mean,
        cpu_per_request_ms(cpu_before, cpu_after, counts),
        other_busy_cores(cpu_before, cpu_after, measure_s),
    )


def plan_levels(
    concurrency: Sequence[int], requests: Sequence[int] | None, block: int | None, warmup: int
) -> list[LevelPlan]:
    """One plan per concurrency; `requests` is one number for all levels or one per level."""
    if not concurrency or any(c < 1 for c in concurrency):
        raise ValueError(f"concurrency must be a list of integers >= 1, not {list(concurrency)}")
    if requests is None:
        per_level = [default_requests(c) for c in concurrency]
    elif len(requests) == 1:
        per_level = list(requests) * len(concurrency)
    elif len(requests) == len(concurrency):
        per_level = list(requests)
    else:
        raise ValueError(f"give one request count or one per concurrency level, not {list(requests)}")
    if any(n < 1 for n in per_level) or (block is not None and block < 1) or warmup < 0:
        raise ValueError("requests and block must be >= 1 and warmup >= 0")
    return [
        LevelPlan(c, n, block or default_block(c), max(warmup, 2 * c))
        for c, n in zip(concurrency, per_level, strict=True)
    ]
