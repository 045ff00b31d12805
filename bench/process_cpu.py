"""CPU time of running processes, read from /proc (Linux), and waiting for them to go quiet."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_ticks(stat_line: str) -> int:
    """User + system time, in clock ticks, from a /proc/<pid>/stat line: every thread's."""
    # The command name, in parentheses, may itself hold spaces and parentheses: split after it.
    fields = stat_line.rpartition(")")[2].split()
    # fields[0] is the state, the stat file's third field: utime and stime are its 14th and 15th.
    return int(fields[11]) + int(fields[12])


def cpu_seconds(pids: Sequence[int]) -> float:
    return sum(cpu_ticks(Path(f"/proc/{pid}/stat").read_text()) for pid in pids) / (
        _TICKS_PER_SECOND
    )


def wait_quiet(
    pids: Sequence[int], *, window: float = 0.3, busy_below: float = 0.1, timeout: float = 20
) -> bool:
    """Until `pids` together used less than `busy_below` of one core over `window` seconds.

    False if they were still busy at `timeout`: the caller decides whether that matters.
    """
    deadline = time.monotonic() + timeout
    while True:
        before = cpu_seconds(pids)
        time.sleep(window)
        if cpu_seconds(pids) - before < busy_below * window:
            return True
        if time.monotonic() > deadline:
            return False
