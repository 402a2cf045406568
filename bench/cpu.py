"""CPU time from /proc: how much the stack's processes used, and how busy other work kept the machine.

On a small machine the benchmark shares its cores with whatever else runs; these numbers say how much of a
measurement that other work took (every function returns None off Linux).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path


def group_cpu_s(pgid: int) -> float | None:
    """CPU seconds (user + system) used so far by the live processes of one process group; None off Linux."""
    ticks = 0
    try:
        stats = list(Path("/proc").glob("[0-9]*/stat"))
        per_s = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None
    for stat in stats:
        try:
            text = stat.read_text()
        except OSError:  # exited meanwhile
            continue
        fields = text[text.rindex(")") + 2 :].split()  # from field 3 (state) on; the name may hold spaces
        if int(fields[2]) == pgid:  # field 5: process group
            ticks += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
    return ticks / per_s


def machine_busy_s() -> float | None:
    """CPU seconds all processes on the machine have used so far (not idle, not I/O wait); None off Linux."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def cpu_snapshot(groups: Sequence[tuple[str, int]]) -> dict[str, float | None]:
    """CPU seconds so far of each local process group, of this client process ("client") and of the
    whole machine ("machine")."""
    times = os.times()
    return {name: group_cpu_s(pgid) for name, pgid in groups} | {
        "client": times.user + times.system,
        "machine": machine_busy_s(),
    }


def other_busy_cores(
    before: dict[str, float | None], after: dict[str, float | None], wall_s: float
) -> float | None:
    """Cores busy with work other than this benchmark's processes, on average over `wall_s`."""
    deltas = {
        name: end - start
        for name, start in before.items()
        if start is not None and (end := after.get(name)) is not None
    }
    if "machine" not in deltas or wall_s <= 0 or len(deltas) < 2:
        return None
    ours = sum(v for name, v in deltas.items() if name != "machine")
    return round(max(0.0, deltas["machine"] - ours) / wall_s, 2)


def busy_cores(window_s: float = 2.0) -> float | None:
    """Cores busy (not idle, not waiting for I/O) over `window_s`, from /proc/stat; None off Linux."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    try:
        busy0, total0 = sample()
        time.sleep(window_s)
        busy1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 == total0:
        return None
    return round((busy1 - busy0) / (total1 - total0) * (os.cpu_count() or 1), 2)
