"""What a benchmark ran on: CPU, cores, threads, GPU, memory bandwidth, library versions, and
how much CPU time was taken away while it ran: by the host (steal, on a shared VM) and by
other processes on the same cores."""

from __future__ import annotations

import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (or the platform string)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def gpu_name() -> str | None:
    """The CUDA GPU torch sees, if any."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def memory_bandwidth(threads: int, megabytes: int = 1024, passes: int = 15) -> dict[str, Any]:
    """Measured read bandwidth (GB/s) over a buffer far past cache: median, min, max.

    Decoding one token reads every weight once, so this read bandwidth, with the same thread
    count as the runtime, is what bounds decode speed. Two read kernels (sum and max) each
    make `passes` passes; the figure is the higher of their medians. The median, because on
    a shared VM single passes swing by up to 2x (another tenant, the host) and the best pass
    sets a bound no sustained decode sees; the higher kernel, because the bound is what the
    memory can deliver, not what one reduction achieves (llama.cpp streams F16 weights a
    little faster than torch's sum does).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        buffer = torch.ones(megabytes * (1 << 20) // 4, dtype=torch.float32)
        kernels = {"sum": buffer.sum, "max": buffer.amax}
        rates = {name: _read_rates(kernel, buffer.numel() * 4, passes)
                 for name, kernel in kernels.items()}  # fmt: skip
    finally:
        torch.set_num_threads(before)
    medians = {name: statistics.median(r) for name, r in rates.items()}
    every = [x for r in rates.values() for x in r]
    return {"gbs": max(medians.values()), "min": min(every), "max": max(every),
            "passes": passes * len(rates), "megabytes": megabytes,
            "kernels": medians}  # fmt: skip


def _read_rates(kernel: Callable[[], Any], nbytes: int, passes: int) -> list[float]:
    """GB/s of each of `passes` timed calls, after one call that touches every page."""
    kernel()
    rates = []
    for _ in range(passes):
        start = time.perf_counter()
        kernel()
        rates.append(nbytes / (time.perf_counter() - start) / 1e9)
    return rates


def describe(threads: int) -> dict[str, Any]:
    """The machine record every bench result carries."""
    return {
        "cpu": cpu_name(),
        "cores": usable_cores(),
        "threads": threads,
        "gpu": gpu_name(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


log = logging.getLogger(__name__)

STEAL_WARN = 0.05  # a share of CPU time stolen above this makes a row's timings unreliable
OTHERS_WARN = 0.10  # so does a share of this machine's CPU time used by other processes
CONTENTION = {"cpu_steal": STEAL_WARN, "cpu_others": OTHERS_WARN}  # key: warning threshold
WHO_TOOK = {"cpu_steal": "the host took", "cpu_others": "other processes used"}  # warnings


class CpuTicks(NamedTuple):
    """CPU ticks so far on the cores this process may use (the whole machine where /proc/stat
    has no line per core): stolen, spent running anything, in all; and this process's own
    (its threads and the children it has waited for)."""

    steal: int
    busy: int
    total: int
    own: float


def own_ticks() -> float:
    """CPU time of this process and its waited-for children, in /proc/stat ticks."""
    t = os.times()
    return (t.user + t.system + t.children_user + t.children_system) * os.sysconf("SC_CLK_TCK")


def cpu_ticks(
    stat: Path = Path("/proc/stat"),
    cores: set[int] | None = None,
    own: Callable[[], float] = own_ticks,
) -> CpuTicks | None:
    """The CpuTicks now, or None where /proc/stat lacks them (not Linux).

    Steal is time a virtual CPU was ready to run but the hypervisor ran something else: on a
    shared VM it slows every timed run without showing up as load inside the machine. Busy
    time that is not this process's own is another process competing for the same cores.
    """
    try:
        lines = [line.split() for line in stat.read_text().splitlines() if line.strip()]
    except OSError:
        return None
    cores = _affinity() if cores is None else cores
    per_core = [f for f in lines if f[0].removeprefix("cpu").isdigit()
                and int(f[0].removeprefix("cpu")) in cores]  # fmt: skip
    chosen = per_core or [f for f in lines if f[:1] == ["cpu"]]
    if not chosen or any(len(f) < 9 for f in chosen):
        return None
    # user nice system idle iowait irq softirq steal
    ticks = [sum(int(f[i]) for f in chosen) for i in range(1, 9)]
    busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]
    return CpuTicks(ticks[7], busy, sum(ticks), own())


def _affinity() -> set[int]:
    try:
        return os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return set()


def steal_share(before: CpuTicks | None, after: CpuTicks | None) -> float | None:
    """The share of CPU time stolen between two cpu_ticks() readings."""
    if before is None or after is None or after.total <= before.total:
        return None
    return (after.steal - before.steal) / (after.total - before.total)


def others_share(before: CpuTicks | None, after: CpuTicks | None) -> float | None:
    """The share of CPU time that other processes used between two cpu_ticks() readings:
    a timing taken while another program runs on the same cores reads slow by it."""
    if before is None or after is None or after.total <= before.total:
        return None
    others = (after.busy - before.busy) - (after.own - before.own)
    return max(0.0, others) / (after.total - before.total)


def contention(before: CpuTicks | None, after: CpuTicks | None) -> dict[str, float]:
    """cpu_steal and cpu_others between two readings, rounded; empty where unknown."""
    shares = {"cpu_steal": steal_share(before, after), "cpu_others": others_share(before, after)}
    return {k: round(v, 4) for k, v in shares.items() if v is not None}


def taken_since(before: CpuTicks | None, during: str, so: str) -> dict[str, float]:
    """contention() from `before` to now, with a warning for each share past its threshold:
    '<who> N% of the CPU time during <during>: <so>'."""
    taken = contention(before, cpu_ticks())
    for key, limit in CONTENTION.items():
        if taken.get(key, 0) > limit:
            log.warning("%s %.0f%% of the CPU time during %s: %s",
                        WHO_TOOK[key], 100 * taken[key], during, so)  # fmt: skip
    return taken
