"""The local vLLM OpenAI server (the CPU build), configured for runtime LoRA on a vision-language model.

The flags that matter, and why:
- `--enable-lora --enable-tower-connector-lora`: adapters cover the language model *and* the vision tower and
  merger. Without the second flag vLLM silently drops the vision part of an adapter, and what is served is not
  what was trained.
- `VLLM_ALLOW_RUNTIME_LORA_UPDATING=1`: enables `/v1/load_lora_adapter` and `/v1/unload_lora_adapter`, so
  adapters are hot-swapped without a restart.
- `--max-loras`, `--max-cpu-loras`: the LoRA slots; the worker fills at most half of them (stack/worker.py).
- `--max-lora-rank`: the worker's rank (8), not more. vLLM pads every adapter to this rank, so a larger value
  only adds work to every LoRA layer at every step; raise it with the worker's `TTRV_LORA_RANK`.
- `--scheduling-policy priority`: adaptation rollouts are sent with a lower priority than served answers, so
  a waiting answer is admitted before waiting rollouts (and running rollouts are preempted first when the KV
  cache runs out).
- `--block-size 32`: the prefix cache shares whole KV blocks only. The CPU backend's default block (128
  tokens) is longer than a whole digit prompt (33 tokens), so nothing was ever cached: each of a rollout's 32
  samples prefilled its prompt again. With 32 the prompt's first block is shared by the samples (hit rate
  above 90%). 16 does not start: the CPU attention kernels need a multiple of 32 for this model's head size
  (32).
- `--max-num-seqs 256 --max-num-batched-tokens 2048`: the step budget. A rollout burst is 32 requests of 32
  samples in flight (the worker's), 1024 sequences of a few tokens each. vLLM's CPU default, 128 sequences a
  step, was 10-30% slower; 1024 (the whole burst in one step) was no faster than 256 on 2 cores, where the
  API server shares the cores with the engine, and doubled the median latency of answers served beside
  rollouts (each step, which an answer waits for, is four times as long). 2048 tokens (vLLM's default) never
  binds with 256 sequences whose prompts the prefix cache shares, and keeps a step short. Served answers
  come first: priority admits them ahead of waiting rollouts, and a rollout sample is a few tokens long, so
  a seat frees within a few steps.
- `--enforce-eager`: graph compilation would add minutes on 2 CPU cores and gains little for a tiny model.
Rollouts and answers beside them with and without the rank, block size and step budget here (and our LoRA
ops, scripts/vllm_cpu_lora_ops.py): `python -m bench.rollouts`.
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
        "--block-size", str(settings.vllm_block_size),
        "--max-num-seqs", str(settings.vllm_max_num_seqs),
        "--max-num-batched-tokens", str(settings.vllm_max_num_batched_tokens),
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
