"""`honed bench` on two tiny models, each in its own process; a broken model is a failed row
and the command exits 1."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from honed.bench.table import contention_notes
from honed.cli import app

pytestmark = pytest.mark.integration


def test_bench_two_models_and_a_broken_one(tiny_causal, tiny_seq2seq, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    out = tmp_path / "bench"
    args = ["bench", str(tiny_causal), str(tiny_seq2seq), str(broken), "--output", str(out),
            "--runs", "2", "--n-prompts", "2", "--max-new-tokens", "4", "--batch-size", "2",
            "--threads", "1"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output  # one model failed; the others are written
    assert "1 of 3 models failed" in result.output
    record = json.loads((out / "bench.json").read_text())
    good, t5, bad = record["results"]
    for row in (good, t5):
        assert row["queries"] == 4 and row["latency_s"]["n"] == 4
        assert row["latency_s"]["p99"] >= row["latency_s"]["median"] > 0
        assert row["size_bytes"] > 0 and row["peak_rss_mb"] > 0
        assert row["batched"]["batch_size"] == 2 and row["batched"]["tok_s"] > 0
        assert row["roofline"]["bytes_per_token"] > 0 and row["roofline"]["share"] > 0
        assert 0 <= row["cpu_steal"] <= 1  # Linux has /proc/stat: the host's share is recorded
        assert 0 <= row["cpu_others"] <= 1  # and other processes' share
    assert "error" in bad and "broken" in bad["model"]
    assert record["machine"]["bandwidth_gbs"] > 0 and record["machine"]["threads"] == 1
    readings = record["machine"]["bandwidth"]["readings"]  # before the first, after each model
    assert len(readings) == 4 and good["roofline"]["bandwidth_around"] == readings[:2]
    assert t5["roofline"]["bandwidth_around"] == readings[1:3]
    table = (out / "bench.md").read_text()
    assert "failed" in table and str(tiny_causal) in table and "p99" in table
    notes = contention_notes(record)  # warnings where a test beside this one took CPU time
    assert notes and all(note in table for note in notes)


def test_bench_refuses_bad_input(tiny_causal, tmp_path):
    runner = CliRunner()
    none = runner.invoke(app, ["bench"])
    assert none.exit_code == 2 and "no models to measure" in none.output
    missing = runner.invoke(app, ["bench", str(tiny_causal), "--prompts", "nope.txt"])
    assert missing.exit_code == 2 and "prompts file 'nope.txt' not found" in missing.output
