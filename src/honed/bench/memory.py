"""This process's resident memory, now and at its peak, from /proc (getrusage elsewhere).

Kept apart from measure.py so that the trainer can log memory without importing the bench.
"""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_bytes() -> int:
    """This process's peak resident memory since it started its program.

    /proc's VmHWM belongs to this program's address space. getrusage's ru_maxrss does not:
    a child started by fork (or vfork) then exec starts from its parent's high-water mark,
    so each model's row showed at least the bench parent's peak.
    """
    found = proc_status_bytes("VmHWM")
    if found is not None:
        return found
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def resident_bytes() -> int | None:
    """This process's resident memory now (None where /proc is not there)."""
    return proc_status_bytes("VmRSS")


def proc_status_bytes(key: str) -> int | None:
    """A memory line of /proc/self/status in bytes (None off Linux)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024  # kB
    return None
