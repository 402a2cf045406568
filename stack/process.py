"""A child process of the local stack: own session, logged to a file, stopped with its children.

Each process gets its own process group (`start_new_session=True`), so stopping it also stops what it
spawned (vLLM starts an engine-core child), and Ctrl-C in the terminal reaches only the launcher, which then
stops its children in order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class LaunchError(RuntimeError):
    """A managed process exited or did not become ready; the message carries the tail of its log."""


class ManagedProcess:
    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None):
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise LaunchError(f"{self.name} was never started")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def wait_ready(self, probe: Callable[[], bool], timeout_s: float, interval_s: float = 0.25) -> None:
        """Poll `probe` until it returns True; fail early, with the log tail, if the process exits."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.proc.returncode if self.proc else None
                raise LaunchError(
                    f"{self.name} exited with code {code}; log {self.log_path}:\n{self.log_tail()}"
                )
            if probe():
                return
            time.sleep(interval_s)
        raise LaunchError(
            f"{self.name} was not ready after {timeout_s:.0f} s; log {self.log_path}:\n{self.log_tail()}"
        )

    def signal(self, sig: int) -> None:
        """Send `sig` to the whole process group."""
        if self.alive():
            os.killpg(self.pid, sig)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left of it after `timeout_s`."""
        if self.proc is None:
            return
        group = self.proc.pid
        for sig, grace_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
            if not _group_alive(group):
                break
            os.killpg(group, sig)
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and _group_alive(group):
                self.proc.poll()  # reap the leader, or it lingers as a zombie member of the group
                time.sleep(0.1)
        self.proc.poll()


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
