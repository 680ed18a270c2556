"""What the benchmark reads about processes and CPUs: CPU time, memory, pinning, file limits.

Everything comes from /proc (Linux): CPU time in clock ticks (usually 10 ms), memory as VmRSS.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of ``pids`` (all their threads), from /proc/PID/stat."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def cpu_busy(cpu: int | None) -> tuple[int, int]:
    """(busy, total) ticks of one CPU from /proc/stat; busy counts every process on it."""
    if cpu is None:
        return 0, 0
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                ticks = [int(v) for v in line.split()[1:]]
                return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # minus idle and iowait
    return 0, 0


def rss_kb(pids: Sequence[int]) -> int:
    """Resident memory of ``pids`` in KiB (VmRSS from /proc/PID/status)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def settled_rss_kb(pids: Sequence[int], timeout: float = 3.0) -> int:
    """RSS once it stops moving (two readings 0.2 s apart within 0.5%), or after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = rss_kb(pids)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = rss_kb(pids)
        if abs(now - last) <= last * 0.005:
            return now
        last = now
    return last


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
    return found


def pin(pid: int, cpu: int | None) -> None:
    """Move every thread of ``pid`` to ``cpu`` (sched_setaffinity acts on one thread only)."""
    if cpu is None:
        return
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(tid), {cpu})


@dataclass(frozen=True)
class Cpus:
    """Where things run: the server under test on ``server``, everything else on ``load``."""

    server: int | None = None
    load: int | None = None

    @property
    def pinned(self) -> bool:
        return self.server is not None

    @classmethod
    def plan(cls, no_pin: bool = False) -> Cpus:
        """Pin this process (and so what it starts) to the second CPU, when there are two."""
        available = sorted(os.sched_getaffinity(0))
        if no_pin or len(available) < 2:
            return cls()
        os.sched_setaffinity(0, {available[1]})
        return cls(server=available[0], load=available[1])

    def server_preexec(self) -> Callable[[], None] | None:
        """For Popen(preexec_fn=...): the child, and all it forks, runs on the server CPU."""
        if self.server is None:
            return None
        server = self.server
        return lambda: os.sched_setaffinity(0, {server})


def raise_nofile() -> int:
    """Raise RLIMIT_NOFILE to the hard limit (inherited by children); return the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
