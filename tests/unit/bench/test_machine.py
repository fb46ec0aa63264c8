"""The machine record: the bandwidth figure is a median with its spread."""

from __future__ import annotations

from honed.bench import machine
from honed.bench.table import _bandwidth


def test_bandwidth_is_the_median_of_its_passes():
    b = machine.memory_bandwidth(threads=1, megabytes=8, passes=5)
    assert b["passes"] == 5 and b["megabytes"] == 8
    assert 0 < b["min"] <= b["gbs"] <= b["max"]


def test_bench_table_prints_the_spread():
    m = {"bandwidth_gbs": 31.04, "bandwidth": {"passes": 15, "min": 28.2, "max": 53.6}}
    assert _bandwidth(m) == "31.0 GB/s (median of 15 passes, 28.2 to 53.6)"
    assert _bandwidth({"bandwidth_gbs": 31.0}) == "31.0 GB/s"
