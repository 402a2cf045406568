"""The gateway as a local child process (`python -m server`), configured through `TTRV_*` variables."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import httpx

from stack.process import ManagedProcess


def gateway_env(
    redis_url: str, vllm_url: str, port: int, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    return {"TTRV_REDIS_URL": redis_url, "TTRV_VLLM_URL": vllm_url, "TTRV_PORT": str(port), **(extra or {})}


def start_gateway(env: Mapping[str, str], log_path: Path, host: str = "127.0.0.1") -> ManagedProcess:
    """Start the gateway and wait for its `/health` (about 2 s: imports, then the lifespan)."""
    proc = ManagedProcess("gateway", [sys.executable, "-m", "server"], log_path, env=env).start()
    url = f"http://{host}:{env['TTRV_PORT']}/health"

    def up() -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    proc.wait_ready(up, timeout_s=60)
    return proc
