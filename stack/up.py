"""`ttrv up`: the whole stack on this machine, as the compose file runs it on a GPU host.

Redis (AOF), vLLM (CPU build, runtime LoRA), the gateway, the adaptation worker and Prometheus, each a
child process in its own process group, started in dependency order and each waited for; a failure stops
whatever was already started and says which log to read. `LocalStack.stop` (also on Ctrl-C, through the
callers' `finally`) stops them in reverse order, process groups included, so nothing is left behind.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from stack.gateway import gateway_env, start_gateway
from stack.process import LaunchError, ManagedProcess
from stack.prometheus import start_prometheus
from stack.redis import start_redis
from stack.settings import StackSettings
from stack.vllm import start_vllm
from stack.worker import loaded_adapters_for, start_worker, worker_env


@dataclass
class LocalStack:
    settings: StackSettings
    run_dir: Path
    model: Path
    processes: list[ManagedProcess] = field(default_factory=list)

    @property
    def api(self) -> str:
        return self.settings.url(self.settings.gateway_port)

    @property
    def redis_url(self) -> str:
        return f"redis://{self.settings.host}:{self.settings.redis_port}/0"

    @property
    def vllm_url(self) -> str:
        return self.settings.url(self.settings.vllm_port)

    @property
    def worker_metrics(self) -> str:
        return f"{self.settings.url(self.settings.worker_metrics_port)}/metrics"

    @property
    def prometheus(self) -> str:
        return self.settings.url(self.settings.prometheus_port)

    @property
    def adapters(self) -> Path:
        return self.run_dir / "adapters"

    def urls(self) -> dict[str, str]:
        return {
            "API": self.api,
            "API docs": f"{self.api}/docs",
            "gateway metrics": f"{self.api}/metrics",
            "worker metrics": self.worker_metrics,
            "Prometheus": f"{self.prometheus}/graph",
            "logs": str(self.run_dir),
        }

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()


def _check_ports_free(settings: StackSettings) -> None:
    ports = {
        "Redis": settings.redis_port,
        "vLLM": settings.vllm_port,
        "gateway": settings.gateway_port,
        "worker metrics": settings.worker_metrics_port,
        "Prometheus": settings.prometheus_port,
    }
    for what, port in ports.items():
        with socket.socket() as s:
            if s.connect_ex((settings.host, port)) == 0:
                raise LaunchError(
                    f"port {port} for {what} is in use (another `ttrv up` or demo still running?); stop it, "
                    f"or choose another port with TTRV_{what.upper().replace(' ', '_')}_PORT"
                )


@contextmanager
def running_stack(
    settings: StackSettings,
    console: Console,
    name: str,
    fresh: bool,
    worker_extra: Mapping[str, str] | None = None,
    gateway_extra: Mapping[str, str] | None = None,
) -> Iterator[LocalStack]:
    """Start the stack under `runs/<name>` (emptied first when `fresh`), yield it, and always stop it."""
    from adapter.tinymodel.build import ensure_model

    _check_ports_free(settings)
    model = settings.model_path or ensure_model(settings.home, settings.model_seed, console)
    run_dir = settings.runs_dir / name
    if fresh:
        shutil.rmtree(run_dir, ignore_errors=True)
    stack = LocalStack(settings, run_dir, model)
    s = settings
    try:
        with console.status(f"starting Redis on port {s.redis_port}"):
            stack.processes.append(
                start_redis(s.redis_port, run_dir / "redis", run_dir / "redis.log", s.host)
            )
        with console.status(f"starting vLLM on port {s.vllm_port} (about 40 s on 2 cores)"):
            stack.processes.append(start_vllm(model, s.vllm_port, s, run_dir / "vllm.log"))
        env = gateway_env(stack.redis_url, stack.vllm_url, s.gateway_port, gateway_extra)
        with console.status(f"starting the gateway on port {s.gateway_port}"):
            stack.processes.append(start_gateway(env, run_dir / "gateway.log", s.host))
        wenv = worker_env(
            stack.redis_url, stack.vllm_url, model, stack.adapters, s.worker_metrics_port,
            loaded_adapters_for(s.vllm_max_loras), worker_extra,
        )  # fmt: skip
        with console.status("starting the adaptation worker"):
            stack.processes.append(start_worker(wenv, run_dir / "worker.log", s.host))
        targets = {
            "gateway": f"{s.host}:{s.gateway_port}",
            "worker": f"{s.host}:{s.worker_metrics_port}",
            "vllm": f"{s.host}:{s.vllm_port}",
        }
        with console.status(f"starting Prometheus on port {s.prometheus_port}"):
            stack.processes.append(
                start_prometheus(
                    targets, s.prometheus_port, run_dir / "prometheus", run_dir / "prometheus.log"
                )
            )
        yield stack
    finally:
        with console.status("stopping the stack"):
            stack.stop()
