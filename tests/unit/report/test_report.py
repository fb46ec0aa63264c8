"""The report from fixture results: joined rows, lineage, flags, Pareto front, HTML page."""

from __future__ import annotations

from pathlib import Path

import pytest

from honed.config import ReportConfig
from honed.errors import HonedError
from honed.report.render import pareto
from honed.report.run import report


def test_report_joins_flags_and_draws(report_results: Path, tmp_path: Path):
    page = report(ReportConfig(dirs=[str(report_results)], output=tmp_path / "report"))
    text = (tmp_path / "report" / "report.md").read_text()
    line = {
        row.split(" | ")[0].strip("| "): row for row in text.splitlines() if row.startswith("| ")
    }
    assert "tuned → tuned-q2" in line["tuned-q2"] and "gguf-q2_k" in line["tuned-q2"]
    assert "lost 20.0 points vs tuned" in line["tuned-q2"]
    assert "KL 0.4000, greedy 25%" in line["tuned-q2"]  # its export check against the source
    assert "export: greedy agreement 25% < 50%; export: EOS token changed" in line["tuned-q2"]
    assert "KL 0.0012, greedy 100%" in line["tuned-q8"] and "export:" not in line["tuned-q8"]
    assert line["tuned"].split(" | ")[3] == "-"  # a fine-tune has no export check
    assert "lost" not in line["tuned-q8"]  # 0.5 points is within the 2-point threshold
    assert (
        "0.4950" in line["tuned-q8"] and "1.000" in line["tuned-q8"] and "500" in line["tuned-q8"]
    )
    assert "failed: cannot load" in line["broken"]
    for png in ("quality-vs-latency.png", "quality-vs-size.png", "loss-tuned.png"):
        assert (tmp_path / "report" / png).read_bytes().startswith(b"\x89PNG")
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 3 and 'class="flag"' in html
    assert "<script" not in html and "http" not in html.split("<body>")[1]  # self-contained


def test_pareto_front_keeps_only_undominated_points():
    points = [(1.0, 0.40), (2.0, 0.50), (1.5, 0.30), (3.0, 0.50), (0.5, 0.10)]
    assert pareto(points) == [4, 0, 1]


def test_report_bad_input(tmp_path: Path):
    with pytest.raises(HonedError, match="nothing at"):
        report(ReportConfig(dirs=[str(tmp_path / "nope")], output=tmp_path / "r"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(HonedError, match="no artifacts, eval summaries or bench results"):
        report(ReportConfig(dirs=[str(tmp_path / "empty")], output=tmp_path / "r"))


def test_report_puts_teacher_and_student_before_and_after_side_by_side(tmp_path: Path):
    import json

    runs = tmp_path / "runs"
    after = runs / "student"
    after.mkdir(parents=True)
    record = {"teacher": {"ref": "big-teacher"}, "student_init": {"ref": "small-student"}}
    manifest = {"honed_manifest": 1, "kind": "adapter", "stage": "distill", "distill": record,
                "parent": {"ref": "small-student"}, "files": {}}  # fmt: skip
    (after / "manifest.json").write_text(json.dumps(manifest))
    export = runs / "student-q8"
    export.mkdir()
    parent = {"ref": str(after), "path": str(after)}
    (export / "manifest.json").write_text(json.dumps(
        {"honed_manifest": 1, "kind": "quantized", "parent": parent,
         "config": {"method": "gguf-q8_0"}, "files": {}}))  # fmt: skip
    results = [("big-teacher", 0.6, 10.0, 1500e6), ("small-student", 0.3, 30.0, 500e6),
               (str(export), 0.45, 31.0, 500e6)]  # fmt: skip
    for n, (model, score, _, _) in enumerate(results):
        (runs / f"e{n}").mkdir()
        (runs / f"e{n}" / "summary.json").write_text(
            json.dumps({"task": "mbpp", "model": model, "pass@k": {"pass@1": score}})
        )
    (runs / "a-teacher-data").mkdir()  # the teacher's run on the train split is not compared
    (runs / "a-teacher-data" / "summary.json").write_text(
        json.dumps({"task": "mbpp-train", "model": "big-teacher", "pass@k": {"pass@1": 0.2}})
    )
    rows = [{"model": m, "parameters": p, "size_bytes": p, "latency_s": {"median": 60 / s},
             "decode_tok_s": {"median": s}} for m, _, s, p in results]  # fmt: skip
    (runs / "bench").mkdir()
    (runs / "bench" / "bench.json").write_text(json.dumps({"results": rows}))
    page = report(ReportConfig(dirs=[str(runs)], output=tmp_path / "report"))
    section = (tmp_path / "report" / "report.md").read_text().split("## Distillation: ")[1]
    teacher, before, student = [r for r in section.splitlines() if r.startswith("| ")][1:]
    assert "| teacher | big-teacher | 1500.0 |" in teacher and "0.6000 (pass@1 mbpp)" in teacher
    assert "| student before | small-student | 500.0 |" in before and "3.00x" in before
    assert "student (measured as student-q8)" in student and "0.4500" in student
    assert "3.10x" in student
    assert '<table class="distill">' in page.read_text()
