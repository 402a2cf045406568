"""The local stack a serving benchmark measures: Redis, vLLM and a gateway as processes, on free ports."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console

from stack.gateway import gateway_env
from stack.ports import free_port
from stack.process import ManagedProcess
from stack.redis import ping, redis_argv
from stack.settings import StackSettings
from stack.vllm import SERVED_NAME, healthy, vllm_argv, vllm_env


@dataclass(frozen=True)
class LocalStack:
    redis_url: str
    vllm_url: str  # vLLM's base URL (no path)
    gateway_url: str  # the gateway's base URL (no path)
    process_groups: tuple[tuple[str, int], ...]  # (name, process group) of each process: CPU accounting


def served_model(settings: StackSettings, console: Console) -> Path:
    """The model folder to serve: `TTRV_MODEL_PATH`, else the built-in model (built once, then cached)."""
    if settings.model_path is not None:
        return settings.model_path
    from adapter.tinymodel.build import ensure_model

    return Path(ensure_model(settings.home, settings.model_seed, console))


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _launch(
    started: list[ManagedProcess],
    proc: ManagedProcess,
    probe: Callable[[], bool],
    timeout_s: float,
    interval_s: float = 0.25,
) -> None:
    """Start `proc` and wait until `probe` holds. It joins `started` before the wait (unlike `stack.*`'s
    `start_*`, which return only a ready process), so one that never gets ready is stopped as well."""
    started.append(proc.start())
    proc.wait_ready(probe, timeout_s, interval_s)


@contextlib.contextmanager
def local_stack(
    settings: StackSettings,
    model: Path,
    run_dir: Path,
    console: Console,
    gateway_extra: Mapping[str, str] | None = None,
) -> Iterator[LocalStack]:
    """Redis, vLLM and a gateway (no API keys, no rate limit, plus `gateway_extra`), stopped at the end."""
    host = settings.host
    started: list[ManagedProcess] = []
    try:
        redis_port, vllm_port, gateway_port = free_port(host), free_port(host), free_port(host)
        redis_url, vllm_url = f"redis://{host}:{redis_port}/0", f"http://{host}:{vllm_port}"
        gateway_url = f"http://{host}:{gateway_port}"
        with console.status(f"starting Redis on port {redis_port}"):
            (run_dir / "redis").mkdir(parents=True, exist_ok=True)
            argv = redis_argv(redis_port, run_dir / "redis", host)
            redis = ManagedProcess("redis", argv, run_dir / "redis.log")
            _launch(started, redis, lambda: ping(host, redis_port), 20.0)
        with console.status(f"starting vLLM on port {vllm_port} (about 40 s on 2 quiet cores)"):
            t0 = time.monotonic()
            argv = vllm_argv(model, vllm_port, settings)
            vllm = ManagedProcess("vllm", argv, run_dir / "vllm.log", env=vllm_env(settings))
            _launch(started, vllm, lambda: healthy(vllm_url), settings.vllm_startup_timeout_s, 1.0)
        console.print(f"vLLM ready in {time.monotonic() - t0:.0f} s")
        extra = {
            "TTRV_HOST": host,
            "TTRV_API_KEYS": "[]",  # explicit, so keys or limits set in the caller's environment do not apply
            "TTRV_RATE_LIMIT_PER_S": "0",
            "TTRV_BASE_MODEL_NAME": SERVED_NAME,
            **(gateway_extra or {}),
        }
        env = gateway_env(redis_url, vllm_url, gateway_port, extra)
        with console.status(f"starting the gateway on port {gateway_port}"):
            gateway = ManagedProcess(
                "gateway", [sys.executable, "-m", "server"], run_dir / "gateway.log", env
            )
            # /ready, not /health: Redis and vLLM reachable and the base model loaded
            _launch(started, gateway, lambda: _answers(f"{gateway_url}/ready"), 60.0, 0.5)
        yield LocalStack(
            redis_url,
            vllm_url,
            gateway_url,
            tuple((proc.name, proc.pid) for proc in started),  # each leads its own process group
        )
    finally:
        for proc in reversed(started):
            proc.stop()
