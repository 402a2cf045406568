"""`ttrv demo`: the main job on embedded defaults.

Builds the built-in model and its data if missing, starts a local Redis (AOF on), a local vLLM server with
runtime LoRA on, and the gateway, then replays a short labeled stream through the public API with the
Python SDK, prints served accuracy per adapter version and where each request went, and stops what it
started.
"""

from __future__ import annotations

import time

from rich.console import Console

from clients.replay import replay, report_table
from clients.rows import read_rows
from clients.sdk import AsyncTTRVClient
from server import keys
from stack.gateway import gateway_env, start_gateway
from stack.process import LaunchError, ManagedProcess
from stack.redis import start_redis
from stack.settings import StackSettings
from stack.vllm import start_vllm


def run_demo(settings: StackSettings, console: Console) -> int:
    from adapter.digits.dataset import write_stream
    from adapter.tinymodel.build import ensure_model

    model = settings.model_path or ensure_model(settings.home, settings.model_seed, console)
    clean = settings.home / "data" / "clean" / "eval.jsonl"
    if not clean.exists():
        write_stream(settings.home / "data", "clean", 0, seed=0)
    run_dir = settings.runs_dir / "demo"
    started: list[ManagedProcess] = []
    try:
        with console.status(f"starting Redis on port {settings.redis_port}"):
            started.append(start_redis(settings.redis_port, run_dir / "redis", run_dir / "redis.log"))
        with console.status(f"starting vLLM on port {settings.vllm_port} (about 40 s on 2 cores)"):
            t0 = time.monotonic()
            started.append(start_vllm(model, settings.vllm_port, settings, run_dir / "vllm.log"))
        console.print(f"vLLM ready in {time.monotonic() - t0:.0f} s with runtime LoRA on")
        redis_url = f"redis://{settings.host}:{settings.redis_port}/0"
        env = gateway_env(redis_url, settings.url(settings.vllm_port), settings.gateway_port)
        with console.status(f"starting the gateway on port {settings.gateway_port}"):
            started.append(start_gateway(env, run_dir / "gateway.log", settings.host))
        api = settings.url(settings.gateway_port)
        console.print(f"gateway ready: {api} (API docs {api}/docs, metrics {api}/metrics)")

        console.print(f"replaying {settings.demo_requests} held-out digits through POST /v1/answer")
        report = replay(
            read_rows(clean),
            lambda: AsyncTTRVClient(api),
            rate=settings.demo_rate,
            concurrency=4,
            limit=settings.demo_requests,
            console=console,
        )
        console.print(report_table(report))
        console.print(
            f"every request is kept in Redis stream {keys.REQUESTS!r} for adaptation; logs in {run_dir}"
        )
        return 0 if report.answered == report.sent else 1
    except LaunchError as err:
        console.print(f"[red]{err}[/red]")
        return 1
    finally:
        with console.status("stopping the stack"):
            for proc in reversed(started):
                proc.stop()
