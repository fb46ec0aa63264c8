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


def test_steal_is_read_from_proc_stat_and_shared_over_the_interval(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 50 800 10 0 0 40 0 0\n")
    before = machine.cpu_ticks(stat, own=lambda: 0)
    assert before == (40, 150, 1000, 0)
    stat.write_text("cpu  200 0 60 820 10 0 0 110 0 0\n")
    assert machine.steal_share(before, machine.cpu_ticks(stat, own=lambda: 0)) == 70 / 200
    assert machine.cpu_ticks(tmp_path / "missing") is None
    assert machine.steal_share(None, before) is None and machine.steal_share(before, before) is None


def test_other_processes_share_is_the_busy_time_not_this_processs_own(tmp_path):
    """Only the cores this process may run on count (a container sees the whole host's)."""
    stat = tmp_path / "stat"
    line = "cpu{} {} 0 {} {} 0 0 0 0 0 0\n"
    stat.write_text(line.format("", 999, 999, 999) + line.format(0, 100, 0, 100)
                    + line.format(1, 50, 50, 100) + line.format(2, 999, 0, 0))  # fmt: skip
    before = machine.cpu_ticks(stat, cores={0, 1}, own=lambda: 40)
    assert before == (0, 200, 400, 40)
    stat.write_text(line.format("", 0, 0, 0) + line.format(0, 200, 0, 100)
                    + line.format(1, 100, 50, 150) + line.format(2, 999, 0, 0))  # fmt: skip
    after = machine.cpu_ticks(stat, cores={0, 1}, own=lambda: 100)
    assert machine.others_share(before, after) == (150 - 60) / 200  # busy 150, 60 of it ours
    assert machine.contention(before, after) == {"cpu_steal": 0.0, "cpu_others": 0.45}
    mostly_ours = machine.cpu_ticks(stat, cores={0, 1}, own=lambda: 400)
    assert machine.others_share(before, mostly_ours) == 0.0  # never below nothing
    assert machine.contention(None, after) == {}


def test_a_real_reading_sees_a_busy_child_as_this_processs_own():
    before = machine.cpu_ticks()
    subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
    after = machine.cpu_ticks()
    assert after.own - before.own > 0  # the waited-for child's CPU time is counted as ours
    assert 0 <= machine.others_share(before, after) <= 1


def test_the_table_warns_of_cpu_time_taken_above_the_thresholds_only():
    from honed.bench.table import contention_notes, contention_warnings

    record = {
        "machine": {"bandwidth": {"cpu_steal": 0.01, "cpu_others": 0.02}},
        "results": [{"model": "a", "cpu_steal": 0.30}, {"model": "b", "cpu_steal": 0.02},
                    {"model": "c", "error": "failed"}, {"model": "d", "cpu_others": 0.4}],
    }  # fmt: skip
    steal, others = contention_warnings(record)
    assert steal.startswith("the host took 30% of the CPU time while a ran")
    assert others.startswith("other processes used 40% of the CPU time while d ran")
    assert contention_notes(record) == [f"**Warning:** {w}." for w in (steal, others)]
    record["results"][0]["cpu_steal"] = 0.0
    record["results"][3]["cpu_others"] = 0.05  # below the 10% that warns
    assert contention_notes(record) == [
        "CPU steal (time the host took away) during the runs: at most 2.0%.",
        "CPU time other processes used during the runs: at most 5.0%.",
    ]
    assert contention_notes({"machine": {}, "results": [{"model": "x"}]}) == []


def test_a_rows_share_uses_the_bandwidth_read_around_it():
    from honed.bench.run import local_roofline

    row = {"model": "m", "decode_tok_s": {"median": 35.0},
           "roofline": {"bandwidth_gbs": 50.0, "bytes_per_token": 500_000_000,
                        "bound_tok_s": 100.0, "share": 0.35}}  # fmt: skip
    roof = local_roofline(row, 30.0, 40.0)["roofline"]
    assert roof["bandwidth_gbs"] == 35.0 and roof["bandwidth_around"] == [30.0, 40.0]
    assert roof["bound_tok_s"] == 70.0 and roof["share"] == 0.5
    failed = {"model": "x", "error": "could not load"}
    assert local_roofline(failed, 30.0, 40.0) == failed
    unknown = {**row, "roofline": {"bandwidth_gbs": 50.0, "bytes_per_token": None}}
    assert local_roofline(unknown, 30.0, 40.0) == unknown


def test_the_header_names_the_readings_between_models():
    b = {"passes": 30, "min": 28.0, "max": 50.0, "kernels": {"sum": 30.1, "max": 31.0},
         "readings": [31.0, 54.0, 33.0]}  # fmt: skip
    text = _bandwidth({"bandwidth_gbs": 33.0, "bandwidth": b})
    assert text.startswith("33.0 GB/s (median of 3 readings, one before the first model")
    assert "31.0 to 54.0" in text
