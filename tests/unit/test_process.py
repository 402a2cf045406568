"""The launcher stops a process together with everything it spawned, and reports early deaths clearly."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from stack.ports import free_port
from stack.process import LaunchError, ManagedProcess
from stack.redis import ping, start_redis

SPAWNS_A_CHILD = (
    "import subprocess, time; subprocess.Popen(['sleep', '300']); print('up', flush=True); time.sleep(300)"
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_stop_ends_the_whole_process_group(tmp_path: Path) -> None:
    proc = ManagedProcess("spawner", [sys.executable, "-c", SPAWNS_A_CHILD], tmp_path / "log").start()
    proc.wait_ready(lambda: "up" in (tmp_path / "log").read_text(), timeout_s=10)
    children = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    assert children, "the test process should have spawned a child"
    proc.stop(timeout_s=5)
    time.sleep(0.2)
    assert not proc.alive()
    assert not any(alive(c) for c in children), "a grandchild survived stop()"


def test_a_process_that_dies_fails_fast_with_its_log(tmp_path: Path) -> None:
    proc = ManagedProcess(
        "crasher", [sys.executable, "-c", "print('boom'); raise SystemExit(3)"], tmp_path / "log"
    )
    proc.start()
    started = time.monotonic()
    with pytest.raises(LaunchError, match=r"exited with code 3[\s\S]*boom"):
        proc.wait_ready(lambda: False, timeout_s=30)
    assert time.monotonic() - started < 10


def test_real_redis_starts_with_aof_and_stops(tmp_path: Path) -> None:
    port = free_port()
    proc = start_redis(port, tmp_path / "data", tmp_path / "redis.log")
    try:
        assert ping("127.0.0.1", port)
    finally:
        proc.stop()
    assert not ping("127.0.0.1", port)
    assert (tmp_path / "data" / "appendonlydir").is_dir(), "AOF should be on"
