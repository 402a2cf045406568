"""Settings of the local stack launcher (`ttrv demo`, the test fixtures), from `TTRV_*` env vars."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TTRV_", extra="ignore")

    home: Path = Field(
        default=Path.home() / ".cache" / "ttrv",
        description="cache folder: built models (models/), data streams (data/), run logs and state (runs/)",
    )
    model_seed: int = Field(default=0, description="seed of the built-in model to build and serve")
    model_path: Path | None = Field(
        default=None, description="serve this Hugging Face model folder instead of the built-in model"
    )
    host: str = Field(default="127.0.0.1", description="address every local process binds to")
    redis_port: int = Field(default=6390, description="port of the local Redis")
    vllm_port: int = Field(default=8100, description="port of the local vLLM OpenAI server (internal)")
    gateway_port: int = Field(default=8000, description="port of the gateway (the public API)")
    worker_metrics_port: int = Field(default=9101, description="port of the worker's Prometheus /metrics")
    prometheus_port: int = Field(default=9090, description="port of the local Prometheus (its UI and API)")
    vllm_dtype: str = Field(
        default="float32", description="vLLM --dtype; float32 matches the trainer exactly"
    )
    vllm_kv_cache_gib: int = Field(default=1, description="VLLM_CPU_KVCACHE_SPACE: KV cache in GiB")
    vllm_max_loras: int = Field(
        default=8,
        ge=6,  # the worker needs 3 loaded: current, previous (grace period), candidate
        description="LoRA slots of vLLM (--max-loras, --max-cpu-loras); the worker keeps at most half of "
        "them loaded (see stack/worker.py)",
    )
    vllm_max_lora_rank: int = Field(
        default=8,
        description="largest LoRA rank vLLM accepts (--max-lora-rank): at least the worker's TTRV_LORA_RANK; "
        "every adapter is padded to it, so a larger one only costs",
    )
    vllm_block_size: int = Field(
        default=32,
        description="KV cache block size (--block-size): the prefix cache shares whole blocks only, and the "
        "CPU backend's default (128) is longer than a digit prompt, so the samples of one rollout never "
        "shared their prompt",
    )
    vllm_max_num_seqs: int = Field(
        default=256,
        description="sequences one engine step runs at most (--max-num-seqs): a rollout burst (32 requests x "
        "32 samples) goes through in slices of this many; more gave no more throughput on 2 cores and "
        "slower answers beside rollouts",
    )
    vllm_max_num_batched_tokens: int = Field(
        default=2048,
        description="tokens one engine step may process (--max-num-batched-tokens); bounds a step's length",
    )
    vllm_max_model_len: int = Field(
        default=512, description="context length vLLM allocates for (--max-model-len)"
    )
    vllm_startup_timeout_s: float = Field(default=300.0, description="how long to wait for vLLM's /health")

    demo_shift: str = Field(
        default="contrast", description="shift of the demo's drifted stream (contrast: adaptation helps)"
    )
    demo_severity: int = Field(default=3, ge=1, le=5, description="severity 1..5 of the demo's shift")
    demo_clean_requests: int = Field(default=150, description="clean requests before the stream drifts")
    demo_drifted_requests: int = Field(
        default=800,
        description="requests of the drifted stream, cycling over the 400 shifted adaptation images",
    )
    demo_rate: float = Field(
        default=2.0, description="requests/s of the demo's stream (0 = as fast as possible)"
    )
    demo_feedback_share: float = Field(
        default=0.05, description="share of answered requests whose label is sent back through /v1/feedback"
    )
    demo_seed: int = Field(default=0, description="seed of the worker's sampling and of the feedback draw")
    demo_probe_images: int = Field(
        default=100,
        description="labeled shifted images in the worker's probe file (the gate's labeled check; 0 = none)",
    )
    demo_eval_images: int = Field(
        default=300, description="held-out images per split in the demo's final evaluation of each version"
    )

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    def url(self, port: int) -> str:
        return f"http://{self.host}:{port}"
