"""What a benchmark ran on: CPU, cores, threads, GPU, memory bandwidth, library versions, and
how much CPU time the host took away while it ran (steal, on a shared VM)."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


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


STEAL_WARN = 0.05  # a share of CPU time stolen above this makes a row's timings unreliable


def cpu_ticks(stat: Path = Path("/proc/stat")) -> tuple[int, int] | None:
    """(steal, total) CPU ticks of the whole machine so far, or None where /proc/stat lacks them.

    Steal is time a virtual CPU was ready to run but the hypervisor ran something else: on a
    shared VM it slows every timed run without showing up as load inside the machine.
    """
    try:
        fields = stat.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if fields[:1] != ["cpu"] or len(fields) < 9:
        return None
    ticks = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return ticks[7], sum(ticks)


def steal_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of CPU time stolen between two cpu_ticks() readings."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])
