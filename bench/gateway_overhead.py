"""Gateway overhead: `POST /v1/answer` against the same request sent straight to vLLM, side by side.

    .venv/bin/python -m bench.gateway_overhead [--requests 300,600] [--concurrency 1,16] [--json-out r.json]

Starts its own Redis, vLLM and gateway on free ports (logs under `TTRV_HOME/runs/bench/`), and stops them
at the end. For each concurrency both paths are warmed up, then each gets the same digit images in short
blocks, interleaved direct, gateway, gateway, direct, ...: each path goes first in half of the block pairs,
so neither gets more of vLLM's prefix and image caches or of a quiet machine. Latency is the client's time
to the complete reply; throughput is successful replies over the summed wall time of the path's blocks.

The direct body is what the gateway itself sends (`server.chat.image_chat_body` with the gateway's
defaults: greedy, n=1, 32 tokens, priority 0), so the difference is the gateway's own work: HTTP in and
out, JSON and base64 decoding, the image check, the backlog check and the Redis record write, the metrics.
The 95% intervals of the ratios come from resampling block pairs (a paired bootstrap). Below the table,
the gateway's mean latency is split (its handler, after it, outside the app; from its replies' `latency_ms`
and its `/metrics`) and the CPU time per request of each local process is given (from `/proc`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from bench.common import (
    BUSY_WARNING,
    ci_text,
    digit_pngs,
    fmt,
    machine_info,
    make_console,
    met_mark,
    write_json,
)
from bench.cpu import busy_cores, cpu_snapshot, other_busy_cores
from bench.local import LocalStack, local_stack, served_model
from bench.stats import BOOTSTRAP_RESAMPLES, pct, ratio
from bench.summary import headline
from server.chat import image_chat_body
from stack.process import LaunchError
from stack.settings import StackSettings
from stack.vllm import SERVED_NAME

P50_RATIO_MAX = 1.05  # gateway p50 latency at most 5% above direct
THROUGHPUT_RATIO_MIN = 0.95  # gateway throughput at least 95% of direct
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


def _reply_text(path: str, body: bytes) -> tuple[str, float | None]:
    """The answer text of a 200 reply, and the gateway's own `latency_ms` (None for direct)."""
    data = json.loads(body)
    if path == "direct":
        return str(data["choices"][0]["message"]["content"] or ""), None
    return str(data["text"]), float(data["latency_ms"])


def path_stats(path: str, blocks: Sequence[Block]) -> dict[str, Any]:
    replies = [r for b in blocks for r in b.replies]
    ok_ms = np.array([r.latency_s * 1000 for r in replies if r.ok], dtype=np.float64)
    wall_s = sum(b.wall_s for b in blocks)
    server_ms = np.array(
        [ms for r in replies if r.ok and (ms := _reply_text(path, r.body)[1]) is not None], dtype=np.float64
    )
    stats: dict[str, Any] = {
        "requests": len(replies),
        "ok": int(ok_ms.size),
        "failed": len(replies) - int(ok_ms.size),
        "failed_statuses": dict(Counter(str(r.status) for r in replies if not r.ok)),
        "failed_samples": [  # the first few failed replies, to see what went wrong
            {"status": r.status, "body": r.body[:300].decode(errors="replace")}
            for r in [r for r in replies if not r.ok][:5]
        ],
        "p50_ms": pct(ok_ms, 50),
        "p95_ms": pct(ok_ms, 95),
        "mean_ms": round(float(ok_ms.mean()), 3) if ok_ms.size else None,
        "wall_s": round(wall_s, 3),
        "throughput_rps": round(ok_ms.size / wall_s, 3) if wall_s > 0 else None,
    }
    if path == "gateway":
        stats["server_p50_ms"] = pct(server_ms, 50)  # the gateway's own latency_ms: no HTTP, no record write
        stats["server_mean_ms"] = round(float(server_ms.mean()), 3) if server_ms.size else None
    return stats


def answer_agreement(blocks: dict[str, list[Block]]) -> float | None:
    """Share of images whose greedy answer text is the same on both paths (both do the same work)."""
    texts: dict[str, dict[int, str]] = {path: {} for path in PATHS}
    for path in PATHS:
        for block in blocks[path]:
            for r in block.replies:
                if r.ok:
                    texts[path].setdefault(r.image, _reply_text(path, r.body)[0])
    common = texts["direct"].keys() & texts["gateway"].keys()
    if not common:
        return None
    return round(sum(texts["direct"][i] == texts["gateway"][i] for i in common) / len(common), 4)


def bootstrap_intervals(
    direct: Sequence[Block], gateway: Sequence[Block], seed: int = 0
) -> dict[str, list[float] | None]:
    """95% intervals of the gateway/direct ratios, resampling block pairs (same images, same moment)."""
    pairs = min(len(direct), len(gateway))
    names = ("p50", "p95", "throughput")
    if pairs < 2:
        return dict.fromkeys(names)
    lat = {
        "d": [b.ok_latencies_s() for b in direct[:pairs]],
        "g": [b.ok_latencies_s() for b in gateway[:pairs]],
    }
    ok = {k: np.array([v.size for v in lat[k]], dtype=np.float64) for k in lat}
    wall = {
        "d": np.array([b.wall_s for b in direct[:pairs]]),
        "g": np.array([b.wall_s for b in gateway[:pairs]]),
    }
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(BOOTSTRAP_RESAMPLES):
        idx = rng.integers(0, pairs, pairs)
        d = np.concatenate([lat["d"][i] for i in idx])
        g = np.concatenate([lat["g"][i] for i in idx])
        if d.size == 0 or g.size == 0:
            continue
        draws["p50"].append(float(np.median(g) / np.median(d)))
        draws["p95"].append(float(np.percentile(g, 95) / np.percentile(d, 95)))
        rate_d = ok["d"][idx].sum() / wall["d"][idx].sum()
        rate_g = ok["g"][idx].sum() / wall["g"][idx].sum()
        draws["throughput"].append(float(rate_g / rate_d))
    return {
        name: [round(float(np.percentile(v, 2.5)), 4), round(float(np.percentile(v, 97.5)), 4)] if v else None
        for name, v in draws.items()
    }


def summarize_level(plan: LevelPlan, data: LevelData) -> dict[str, Any]:
    blocks = data.blocks
    direct, gateway = path_stats("direct", blocks["direct"]), path_stats("gateway", blocks["gateway"])
    gateway["app_mean_ms"] = data.app_ms_mean
    ratios = {
        "p50": ratio(gateway["p50_ms"], direct["p50_ms"]),
        "p95": ratio(gateway["p95_ms"], direct["p95_ms"]),
        "throughput": ratio(gateway["throughput_rps"], direct["throughput_rps"]),
    }
    return {
        "concurrency": plan.concurrency,
        "requests_per_path": plan.requests,
        "block": plan.block,
        "warmup_per_path": plan.warmup,
        "direct": direct,
        "gateway": gateway,
        "ratios": ratios,
        "ci95": bootstrap_intervals(blocks["direct"], blocks["gateway"]),
        "met": {
            "p50": ratios["p50"] is not None and ratios["p50"] <= P50_RATIO_MAX,
            "throughput": ratios["throughput"] is not None and ratios["throughput"] >= THROUGHPUT_RATIO_MIN,
        },
        "answer_agreement": answer_agreement(blocks),
        "cpu_ms_per_request": data.cpu_ms,
        "other_busy_cores": data.other_cores,
        "raw": {
            path: {
                "latency_ms": [round(r.latency_s * 1000, 3) for b in blocks[path] for r in b.replies],
                "status": [r.status for b in blocks[path] for r in b.replies],
                "block_wall_s": [round(b.wall_s, 4) for b in blocks[path]],
            }
            for path in PATHS
        },
    }


def measure(
    endpoints: Endpoints,
    payloads: Payloads,
    plans: Sequence[LevelPlan],
    timeout_s: float = 120.0,
    console: Console | None = None,
) -> list[dict[str, Any]]:
    """Measure both paths on a running stack, one concurrency after the other; one summary per level."""
    console = console or Console()

    async def all_levels() -> list[dict[str, Any]]:
        out, first_image = [], 0
        for plan in plans:
            with console.status(
                f"c={plan.concurrency}: {plan.warmup} warm-up + {plan.requests} requests per path, "
                f"blocks of {plan.block}"
            ):
                started = time.monotonic()
                data = await measure_level(endpoints, payloads, plan, first_image, timeout_s)
            console.print(f"c={plan.concurrency}: measured in {time.monotonic() - started:.1f} s")
            out.append(summarize_level(plan, data))
            first_image = (first_image + plan.warmup + plan.requests) % len(payloads)
        return out

    return asyncio.run(all_levels())


def report_table(result: dict[str, Any]) -> Table:
    table = Table(title="gateway overhead: POST /v1/answer vs. the same request straight to vLLM")
    table.add_column("c", justify="right")
    table.add_column("metric")
    for name in ("direct", "gateway", "gw/direct", "95% CI"):
        table.add_column(name, justify="right")
    table.add_column("target")
    table.add_column("met")
    for level in result["levels"]:
        d, g, r, ci, met = level["direct"], level["gateway"], level["ratios"], level["ci95"], level["met"]
        c = str(level["concurrency"])
        table.add_row(
            c, "p50 latency (ms)", fmt(d["p50_ms"]), fmt(g["p50_ms"]), fmt(r["p50"], 3), ci_text(ci["p50"]),
            f"<= {P50_RATIO_MAX}", met_mark(met["p50"]),
        )  # fmt: skip
        table.add_row(
            "", "p95 latency (ms)", fmt(d["p95_ms"]), fmt(g["p95_ms"]), fmt(r["p95"], 3), ci_text(ci["p95"]),
            "", "",
        )  # fmt: skip
        table.add_row(
            "", "throughput (req/s)", fmt(d["throughput_rps"]), fmt(g["throughput_rps"]),
            fmt(r["throughput"], 3), ci_text(ci["throughput"]), f">= {THROUGHPUT_RATIO_MIN}",
            met_mark(met["throughput"]),
        )  # fmt: skip
        failed = f"{d['failed']}/{d['requests']}", f"{g['failed']}/{g['requests']}"
        style = "red" if d["failed"] or g["failed"] else ""
        table.add_row("", "failed (non-200)", *failed, "", "", "", "", style=style)
        table.add_row("", "p50 inside gateway (ms)", "", fmt(g["server_p50_ms"]), "", "", "", "", style="dim")
        table.add_section()
    return table


def breakdown_lines(level: dict[str, Any]) -> list[str]:
    """Where the gateway's time goes at one level: its mean latency split up, and CPU per request."""
    lines = []
    c, d, g, cpu = level["concurrency"], level["direct"], level["gateway"], level["cpu_ms_per_request"]
    if None not in (d["mean_ms"], g["mean_ms"], g["server_mean_ms"], g["app_mean_ms"]):
        outside, after = g["mean_ms"] - g["app_mean_ms"], g["app_mean_ms"] - g["server_mean_ms"]
        lines.append(
            f"c={c} means (ms): direct {d['mean_ms']:.1f}; gateway {g['mean_ms']:.1f} = handler "
            f"{g['server_mean_ms']:.1f} (body read, checks, the vLLM call) + after it {after:.1f} (record "
            f"write, response) + outside the app {outside:.1f} (uvicorn, HTTP, waiting for the event loop)"
        )
    if cpu:
        both = ", ".join(f"{name} {cpu[name]:.1f}" for name in ("vllm", "client") if name in cpu)
        gateway_only = ", ".join(f"{name} {cpu[name]:.1f}" for name in ("gateway", "redis") if name in cpu)
        lines.append(f"c={c} CPU per request (ms): {both} (either path); {gateway_only} (gateway path only)")
    return lines


def print_report(result: dict[str, Any], console: Console) -> None:
    console.print(report_table(result))
    cores = result["machine"]["cpu_count"]
    console.print(
        f"machine: {cores} CPU cores. vLLM (API server + engine core), the gateway, Redis and this client "
        "all run on them, so the gateway's CPU time is taken from vLLM's: the ratios include that contention."
    )
    console.print(
        "latency: client time to the full reply. throughput: successful replies / summed wall time of the "
        "path's blocks. 'p50 inside gateway': the gateway's own latency_ms (body read to answer; no "
        "uvicorn/HTTP, no Redis record write). 95% CI: paired bootstrap over block pairs."
    )
    for level in result["levels"]:
        for line in breakdown_lines(level):
            console.print(line)
    busy = result["machine"]["busy_cores_before"]
    if busy is not None and busy > BUSY_WARNING:
        console.print(
            f"[yellow]{busy:.2f} cores were busy with other work just before the stack started: it adds "
            "noise to both paths (interleaving keeps the comparison fair)[/yellow]"
        )
    for level in result["levels"]:
        other = level["other_busy_cores"]
        if other is not None and other > BUSY_WARNING:
            console.print(
                f"[yellow]c={level['concurrency']}: other work kept {other:.2f} cores busy on average while "
                "it was measured: both paths got less CPU, the ratios are noisier[/yellow]"
            )
        agreement = level["answer_agreement"]
        if agreement is not None and agreement < 1.0:
            console.print(
                f"[yellow]c={level['concurrency']}: only {agreement:.1%} of images got the same answer text "
                "on both paths: the two bodies may differ[/yellow]"
            )
    verdict = "[green]all targets met[/green]" if result["all_met"] else "[red]a target was missed[/red]"
    console.print(
        f"targets: p50 ratio <= {P50_RATIO_MAX}, throughput ratio >= {THROUGHPUT_RATIO_MIN}: {verdict}"
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


def run(
    concurrency: Sequence[int] = (1, 16),
    requests: Sequence[int] | None = None,
    *,
    block: int | None = None,
    warmup: int = 20,
    timeout_s: float = 120.0,
    settings: StackSettings | None = None,
    json_out: Path | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Start a local stack, measure both paths at each concurrency, print the table; returns the results.

    `requests` per path: None for the defaults (300 at c=1, 600 above), one number for every level, or one
    per level. `block`: requests per interleaved block (default max(20, 4 x concurrency)). `warmup`:
    requests per path before each level (at least 2 x concurrency). Pass `Console(quiet=True)` to print
    nothing. Raises `LaunchError` when a process does not start, and `ValueError` on bad arguments.
    """
    from adapter.digits.task import PROMPT

    console = console or Console()
    settings = settings or StackSettings()
    plans = plan_levels(concurrency, requests, block, warmup)
    started_at = datetime.now(UTC)
    run_dir = settings.runs_dir / "bench" / f"gateway-overhead-{started_at:%Y%m%d-%H%M%S}"
    model = served_model(settings, console)
    payloads = build_payloads(digit_pngs(), PROMPT)
    busy_before = busy_cores()  # before our own processes start: other work on the machine
    console.print(
        f"gateway overhead on {os.cpu_count()} CPU cores; model {model}; {len(payloads)} held-out digit "
        f"images; logs in {run_dir}"
    )
    try:
        # Both bodies ask for MAX_TOKENS: pinned in the gateway's environment so they agree.
        with local_stack(settings, model, run_dir, console, {"TTRV_MAX_TOKENS": str(MAX_TOKENS)}) as stack:
            levels = measure(endpoints_of(stack), payloads, plans, timeout_s, console)
    finally:
        shutil.rmtree(run_dir / "redis", ignore_errors=True)  # the records written during the run
    result: dict[str, Any] = {
        "benchmark": "gateway_overhead",
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**machine_info(), "busy_cores_before": busy_before},
        "model": str(model),
        "logs": str(run_dir),
        "targets": {"p50_ratio_max": P50_RATIO_MAX, "throughput_ratio_min": THROUGHPUT_RATIO_MIN},
        "method": {
            "interleave": "blocks direct,gateway,gateway,direct,... with the same images in each pair",
            "max_tokens": MAX_TOKENS,
            "timeout_s": timeout_s,
            "bootstrap_resamples": BOOTSTRAP_RESAMPLES,
        },
        "levels": levels,
        "all_met": all(level["met"]["p50"] and level["met"]["throughput"] for level in levels),
        "failed": sum(level["direct"]["failed"] + level["gateway"]["failed"] for level in levels),
    }
    print_report(result, console)
    if json_out is not None:
        write_json(json_out, result)
        console.print(f"results written to {json_out}")
    return result


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a `run` result, per concurrency level, for `bench.run_all`'s table."""
    rows = []
    for level in result["levels"]:
        c, r = level["concurrency"], level["ratios"]
        failed = level["direct"]["failed"] + level["gateway"]["failed"]
        rows += [
            headline(f"c={c} p50 latency gateway/direct", r["p50"], "x", "<=", P50_RATIO_MAX,
                     note=ci_text(level["ci95"]["p50"])),
            headline(f"c={c} throughput gateway/direct", r["throughput"], "x", ">=", THROUGHPUT_RATIO_MIN,
                     note=ci_text(level["ci95"]["throughput"])),
            headline(f"c={c} failed requests", failed, "", "==", 0),
        ]  # fmt: skip
    return {"benchmark": "gateway_overhead", "headlines": rows}


def _ints(text: str, option: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"expected comma-separated integers, got {text!r}", param_hint=option
        ) from None


def main(
    requests: Annotated[
        str | None,
        typer.Option(
            help="requests per path: one number for every level, or one per level (default 300,600)"
        ),
    ] = None,
    concurrency: Annotated[str, typer.Option(help="concurrency levels, comma-separated")] = "1,16",
    block: Annotated[
        int | None, typer.Option(help="requests per interleaved block (default max(20, 4 x concurrency))")
    ] = None,
    warmup: Annotated[
        int, typer.Option(help="warm-up requests per path before each level (at least 2 x concurrency)")
    ] = 20,
    timeout_s: Annotated[float, typer.Option(help="timeout of one request, in seconds")] = 120.0,
    json_out: Annotated[Path | None, typer.Option("--json-out", help="also write the results here")] = None,
    check: Annotated[bool, typer.Option(help="exit 1 when a target is missed or a request failed")] = False,
) -> None:
    """Overhead of the gateway (POST /v1/answer) against the same request sent straight to vLLM."""
    console = make_console(120)
    levels = _ints(concurrency, "--concurrency")
    counts = None if requests is None else _ints(requests, "--requests")
    try:
        plan_levels(levels, counts, block, warmup)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    try:
        result = run(levels, counts, block=block, warmup=warmup, timeout_s=timeout_s, json_out=json_out,
                     console=console)  # fmt: skip
    except LaunchError as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(1) from None
    if check and (not result["all_met"] or result["failed"]):
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
