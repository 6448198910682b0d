"""CPU time and memory of a process, read from /proc (Linux only).

`sample(pid)` reads user+sys CPU seconds from /proc/<pid>/stat (fields 14 and 15, in
clock ticks) and the resident set size from /proc/<pid>/status (VmRSS). All threads
of the process are included (Tether's SQLite writer thread, for instance).
`system_busy_seconds()` is the busy time of all cores, so a run can tell how much CPU
other processes on the machine took. `raise_nofile()` lifts RLIMIT_NOFILE to its hard
limit; every benchmark process calls it.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcSample:
    """One reading of a process: CPU seconds used so far, resident bytes, and when."""

    cpu_seconds: float
    rss_bytes: int
    at: float  # time.monotonic()

    def cpu_since(self, earlier: ProcSample) -> float:
        return self.cpu_seconds - earlier.cpu_seconds

    def to_dict(self) -> dict[str, float]:
        return {"cpu_seconds": self.cpu_seconds, "rss_bytes": self.rss_bytes, "at": self.at}


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    # The command name (field 2) may contain spaces; fields after it are space-separated.
    fields = raw[raw.rindex(b")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of the full line
    return (utime + stime) / _TICKS


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def system_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat), to spot other load."""
    with open("/proc/stat", "rb") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / _TICKS


def sample(pid: int) -> ProcSample:
    return ProcSample(cpu_seconds(pid), rss_bytes(pid), time.monotonic())


def raise_nofile() -> int:
    """Raise the soft open-files limit to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard
