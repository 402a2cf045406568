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

    Never more than the slots, or vLLM evicts one silently. And not up to the slots either: on vLLM 0.32 (CPU
    build) with `--enable-tower-connector-lora`, once the adapters in flight together come near the slot
    count, some requests are computed with another adapter's weights, base-model requests included
    (measured: 3 adapters sampling beside greedy base requests changed 7 of 200 base answers with 4 slots,
    none with 8; `tests/integration/test_lifecycle_on_real_stack.py` checks it).
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
