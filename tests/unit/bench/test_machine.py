"""The machine record: bandwidth (a median with its spread) and peak memory per process."""

from __future__ import annotations

import subprocess
import sys

from honed.bench import machine
from honed.bench.measure import peak_rss_bytes
from honed.bench.table import _bandwidth


def test_bandwidth_is_the_median_of_its_passes():
    b = machine.memory_bandwidth(threads=1, megabytes=8, passes=5)
    assert b["passes"] == 10 and b["megabytes"] == 8 and set(b["kernels"]) == {"sum", "max"}
    assert b["gbs"] == max(b["kernels"].values())
    assert 0 < b["min"] <= b["gbs"] <= b["max"]


def test_bench_table_prints_the_spread():
    b = {"passes": 30, "min": 28.2, "max": 53.6, "kernels": {"sum": 30.1, "max": 31.0}}
    m = {"bandwidth_gbs": 31.04, "bandwidth": b}
    assert _bandwidth(m) == "31.0 GB/s (median of sum and max passes, 30 in all, 28.2 to 53.6)"
    assert _bandwidth({"bandwidth_gbs": 31.0}) == "31.0 GB/s"


def test_a_child_reports_its_own_peak_memory_not_its_parents():
    ballast = bytearray(b"\1") * (1536 << 20)  # 1.5 GiB resident in this (parent) process
    code = "from honed.bench.measure import peak_rss_bytes; print(peak_rss_bytes())"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert child.returncode == 0, child.stderr
    assert int(child.stdout.split()[-1]) < 1 << 30
    assert peak_rss_bytes() > len(ballast)
