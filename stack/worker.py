"""The adaptation worker as a local child process (`python -m adapter`), configured through `TTRV_*`
variables, the same names the compose deployment sets (docker-compose.yml)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import httpx

from stack.process import ManagedProcess


def loaded_adapters_for(max_loras: int) -> int:
    """How many adapters the worker may keep loaded in a vLLM with `max_loras` slots: half of them.

    Never more than the slots, or vLLM evicts one silently, possibly the one being served. Half, because the
    worker's count is not the only one: a gateway loads the current version again after a vLLM restart, and
    other workers or an operator may load names too. (Spare slots also hid, but did not cure, a vLLM CPU bug
    that gave base-model tokens the last slot's adapter; scripts/bootstrap.sh patches it.)
    """
    return max_loras // 2


def worker_env(
    redis_url: str,
    vllm_url: str,
    model: Path,
    adapter_dir: Path,
    metrics_port: int,
    max_loaded_adapters: int,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """`max_loaded_adapters` must be at most half of vLLM's `--max-loras` (`loaded_adapters_for`)."""
    return {
        "TTRV_REDIS_URL": redis_url,
        "TTRV_VLLM_URL": vllm_url,
        "TTRV_MODEL_PATH": str(model),
        "TTRV_ADAPTER_DIR": str(adapter_dir),
        "TTRV_METRICS_PORT": str(metrics_port),
        "TTRV_MAX_LOADED_ADAPTERS": str(max_loaded_adapters),
        **(extra or {}),
    }


def start_worker(env: Mapping[str, str], log_path: Path, host: str = "127.0.0.1") -> ManagedProcess:
    """Start the worker and wait for its `/metrics` (a few seconds: torch and the training copy load)."""
    proc = ManagedProcess("worker", [sys.executable, "-m", "adapter"], log_path, env=env).start()
    url = f"http://{host}:{env['TTRV_METRICS_PORT']}/metrics"

    def up() -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    proc.wait_ready(up, timeout_s=120)
    return proc
