"""Session fixtures on real parts: a real `redis-server` and a real vLLM OpenAI server (CPU build), serving
the built-in tiny model with runtime LoRA on. Each starts on a free port, is waited for and always stopped.

The built-in model is built once into the cache folder (TTRV_HOME, default ~/.cache/ttrv) and reused.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from adapter.tinymodel.build import ensure_model
from stack.ports import free_port
from stack.process import ManagedProcess
from stack.redis import start_redis
from stack.settings import StackSettings
from stack.vllm import SERVED_NAME, start_vllm


@dataclass
class RedisServer:
    host: str
    port: int
    process: ManagedProcess

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


@dataclass
class VllmServer:
    base_url: str
    model_dir: Path
    served_name: str
    process: ManagedProcess

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=120)


@pytest.fixture(scope="session")
def stack_settings() -> StackSettings:
    return StackSettings()


@pytest.fixture(scope="session")
def tiny_model(stack_settings: StackSettings) -> Path:
    return ensure_model(stack_settings.home, seed=0)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    root = tmp_path_factory.mktemp("redis")
    port = free_port()
    proc = start_redis(port, root / "data", root / "redis.log")
    try:
        yield RedisServer("127.0.0.1", port, proc)
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def vllm_server(
    tiny_model: Path, stack_settings: StackSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VllmServer]:
    log = tmp_path_factory.mktemp("vllm") / "vllm.log"
    port = free_port()
    proc = start_vllm(tiny_model, port, stack_settings, log)
    try:
        yield VllmServer(f"http://127.0.0.1:{port}", tiny_model, SERVED_NAME, proc)
    finally:
        proc.stop()
