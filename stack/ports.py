"""Free TCP ports on the loopback interface, for tests that start their own servers."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it; a race with another process is unlikely)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
