"""The local vLLM OpenAI server (the CPU build), configured for runtime LoRA on a vision-language model.

The flags that matter, and why:
- `--enable-lora --enable-tower-connector-lora`: adapters cover the language model *and* the vision tower and
  merger. Without the second flag vLLM silently drops the vision part of an adapter, and what is served is not
  what was trained.
- `VLLM_ALLOW_RUNTIME_LORA_UPDATING=1`: enables `/v1/load_lora_adapter` and `/v1/unload_lora_adapter`, so
  adapters are hot-swapped without a restart.
- `--scheduling-policy priority`: adaptation rollouts are sent with a lower priority than served answers.
- `--enforce-eager`: graph compilation would add minutes on 2 CPU cores and gains little for a tiny model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx

from stack.process import ManagedProcess
from stack.settings import StackSettings

SERVED_NAME = "base"  # the name the base model is served under; adapters are served as ttrv-v<N>


def vllm_argv(model: Path, port: int, settings: StackSettings) -> list[str]:
    return [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model),
        "--served-model-name", SERVED_NAME,
        "--host", settings.host,
        "--port", str(port),
        "--dtype", settings.vllm_dtype,
        "--max-model-len", str(settings.vllm_max_model_len),
        "--enforce-eager",
        "--limit-mm-per-prompt", json.dumps({"image": 1, "video": 0}),
        "--enable-lora",
        "--enable-tower-connector-lora",
        "--max-loras", str(settings.vllm_max_loras),
        "--max-cpu-loras", str(settings.vllm_max_loras),
        "--max-lora-rank", str(settings.vllm_max_lora_rank),
        "--scheduling-policy", "priority",
        "--disable-uvicorn-access-log",
    ]  # fmt: skip


def vllm_env(settings: StackSettings) -> dict[str, str]:
    return {
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "1",
        "VLLM_CPU_KVCACHE_SPACE": str(settings.vllm_kv_cache_gib),
        "VLLM_NO_USAGE_STATS": "1",
        "HF_HUB_OFFLINE": "1",  # there is no hub to reach; fail fast instead of retrying
        "TOKENIZERS_PARALLELISM": "false",
    }


def healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def start_vllm(model: Path, port: int, settings: StackSettings, log_path: Path) -> ManagedProcess:
    """Start vLLM and wait until `/health` answers (about 40 s for the built-in model on 2 cores)."""
    proc = ManagedProcess("vllm", vllm_argv(model, port, settings), log_path, env=vllm_env(settings)).start()
    base_url = f"http://{settings.host}:{port}"
    proc.wait_ready(lambda: healthy(base_url), timeout_s=settings.vllm_startup_timeout_s, interval_s=1.0)
    return proc
