"""What a benchmark ran on: CPU, cores, threads, GPU, memory bandwidth, library versions."""

from __future__ import annotations

import os
import platform
import statistics
import time
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


def memory_bandwidth(threads: int, megabytes: int = 1024, passes: int = 15) -> dict[str, float]:
    """Measured read bandwidth (GB/s) of sums over a buffer far past cache: median, min, max.

    Decoding one token reads every weight once, so this read bandwidth, with the same thread
    count as the runtime, is what bounds decode speed. The median of many passes is the
    figure used: on a shared VM single passes swing by up to 2x (another tenant, the host),
    and the best pass would set a bound a sustained decode never sees.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        buffer = torch.ones(megabytes * (1 << 20) // 4, dtype=torch.float32)
        buffer.sum()  # touch every page once
        rates = []
        for _ in range(passes):
            start = time.perf_counter()
            buffer.sum()
            rates.append(buffer.numel() * 4 / (time.perf_counter() - start) / 1e9)
        return {"gbs": statistics.median(rates), "min": min(rates), "max": max(rates),
                "passes": passes, "megabytes": megabytes}  # fmt: skip
    finally:
        torch.set_num_threads(before)


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
