"""A local `redis-server` (Debian's package), with the same durability settings as the compose deployment.

AOF with `appendfsync everysec` means a Redis crash loses at most about one second of acknowledged writes,
and a restart on the same folder reloads everything else.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from stack.process import LaunchError, ManagedProcess


def redis_argv(port: int, data_dir: Path, host: str = "127.0.0.1") -> list[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise LaunchError(
            "redis-server is not installed: run scripts/bootstrap.sh (apt-get install redis-server)"
        )
    return [
        binary,
        "--port", str(port),
        "--bind", host,
        "--dir", str(data_dir),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",  # AOF only: no background RDB snapshots competing for the 2 cores
        "--protected-mode", "no",
    ]  # fmt: skip


def ping(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when a Redis answers PING on host:port (raw RESP, so no client library is needed)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(port: int, data_dir: Path, log_path: Path, host: str = "127.0.0.1") -> ManagedProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = ManagedProcess("redis", redis_argv(port, data_dir, host), log_path).start()
    proc.wait_ready(lambda: ping(host, port), timeout_s=20)
    return proc
