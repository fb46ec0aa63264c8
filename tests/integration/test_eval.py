"""`honed eval` end to end: reference solutions score full marks in the sandbox, the CLI
rejects bad input with one line, and a real (tiny) model goes through generation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from honed.cli import app
from honed.config import EvalConfig
from honed.evaluate import tasks
from honed.evaluate.run import evaluate

pytestmark = pytest.mark.integration


def reference_samples(path: Path, task: tasks.CodeTask, problems: list, prompting: str) -> Path:
    """A samples file holding each problem's reference solution, as a model would answer."""
    rows = [
        {
            "task_id": p.task_id,
            "prompting": prompting,
            "completion": tasks.reference_completion(task, p, prompting),
        }
        for p in problems
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def score_references(tmp_path: Path, name: str, prompting: str) -> dict:
    task = tasks.get_task(name)
    samples = reference_samples(tmp_path / "s.jsonl", task, task.load(), prompting)
    cfg = EvalConfig(task=name, samples=samples, output=tmp_path / "out", workers=2)
    return evaluate(cfg)


@pytest.mark.parametrize("prompting", ["base", "chat"])
def test_humaneval_references_pass_164_of_164(tmp_path, prompting):
    summary = score_references(tmp_path, "humaneval", prompting)
    assert summary["counts"]["passed"] == 164, summary["counts"]
    assert summary["pass@k"] == {"pass@1": 1.0} and summary["prompting"] == prompting


def test_sanitized_mbpp_references_pass_427_of_427(tmp_path):
    summary = score_references(tmp_path, "mbpp-sanitized", "base")
    assert summary["counts"]["passed"] == 427, summary["counts"]


def test_all_974_mbpp_references_pass_with_setup_code_after_the_solution(tmp_path, monkeypatch):
    everything = dataclasses.replace(tasks.TASKS["mbpp"], load=lambda: tasks.mbpp_problems("all"))
    monkeypatch.setitem(tasks.TASKS, "mbpp", everything)  # the full set, not the test split
    summary = score_references(tmp_path, "mbpp", "base")
    assert summary["problems"] == 974 and summary["counts"]["passed"] == 974, summary["counts"]


def honed_eval(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["eval", *args])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def test_cli_rescores_and_prints_a_table(tmp_path):
    task = tasks.get_task("humaneval")
    samples = reference_samples(tmp_path / "s.jsonl", task, task.load()[:3], "base")
    code, output = honed_eval("--task", "humaneval", "--samples", str(samples), "--output", "o")
    assert code == 0, output
    assert "pass@1" in output and "1.0000" in output and "passed 3" in output
    assert (tmp_path / "o" / "summary.md").is_file()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--task", "codex"], "unknown task 'codex': use humaneval, mbpp, mbpp-train"),
        (["--model", "no/such-model-here", "--limit", "1"], "no/such-model-here"),
        (["--model", "nope", "--limit", "1"], "model 'nope' not found"),
        (["--prompting", "maybe"], "bad value for 'prompting'"),
        (["--k", "1,ten"], "bad value for 'k'"),
        (["--samples", "mine.jsonl"], "samples file 'mine.jsonl' not found"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, args, expected):
    code, output = honed_eval(*args, "--output", "out")
    assert code == 2, output
    assert expected in " ".join(output.split()), output
    assert "Traceback" not in output
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()


def test_cli_samples_of_another_task(tmp_path):
    task = tasks.get_task("mbpp")
    samples = reference_samples(tmp_path / "s.jsonl", task, task.load()[:2], "base")
    code, output = honed_eval("--task", "humaneval", "--samples", str(samples))
    assert code == 2 and "task ids not in humaneval (e.g. 'Mbpp/11')" in output, output


@pytest.fixture(scope="module")
def tiny_backend(tiny_causal):
    from honed.runtime import load_backend

    try:
        backend = load_backend(str(tiny_causal))
    except (NotImplementedError, ImportError) as exc:
        pytest.skip(f"runtime backends are not implemented yet ({exc})")
    yield backend
    backend.close()


@pytest.mark.parametrize("prompting", ["base", "auto"])
def test_tiny_model_generates_and_is_scored(tmp_path, monkeypatch, tiny_backend, prompting):
    task = tasks.get_task("humaneval")
    short = [p for p in task.load() if p.task_id in ("HumanEval/53", "HumanEval/55")]
    monkeypatch.setitem(tasks.TASKS, "humaneval", dataclasses.replace(task, load=lambda: short))
    cfg = EvalConfig(
        task="humaneval", output=tmp_path / "he", max_new_tokens=8, prompting=prompting
    )  # the tiny model's context is 256 tokens: two short problems fit
    summary = evaluate(cfg, tiny_backend)
    assert sum(summary["counts"].values()) == 2 and summary["backend"] == tiny_backend.name
    assert summary["prompting"] == {"base": "base", "auto": "chat"}[prompting]
    assert summary["tokens"]["completion"] > 0 and summary["generation_s"] > 0
    text = EvalConfig(task="text:quotes", output=tmp_path / "q", limit=3, max_new_tokens=6)
    assert set(evaluate(text, tiny_backend)["metrics"]) == {
        "exact_match",
        "bleu",
        "chrf",
        "rouge_l",
    }


def test_perplexity_of_held_out_text(tmp_path, tiny_causal, arith_data):
    cfg = EvalConfig(
        model=str(tiny_causal), task=f"text:{arith_data}", metric="perplexity", limit=8,
        output=tmp_path / "ppl",
    )  # fmt: skip
    summary = evaluate(cfg)
    metrics = summary["metrics"]
    assert metrics["perplexity"] > 1 and metrics["tokens"] >= 8
    assert summary["prompting"] == "chat"  # the tiny model ships a chat template
    assert (tmp_path / "ppl" / "summary.json").is_file()
