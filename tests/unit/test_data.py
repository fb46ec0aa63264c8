"""Data specs, built-in formats, splits, templates and malformed rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from honed.data import prepare_data
from honed.data.builtin import find_data_file, load_code_dir, load_py_functions, mbpp_row
from honed.data.format import choose_format, parse_template
from honed.data.sources import BadRows, load_splits
from honed.errors import HonedError

needs_shared = pytest.mark.skipif(find_data_file("mbpp.jsonl") is None, reason="no shared data")


@pytest.fixture(scope="module")
def tok(tiny_causal):
    return AutoTokenizer.from_pretrained(tiny_causal)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@needs_shared
def test_mbpp_standard_split():
    splits = load_splits("mbpp", BadRows(False))
    sizes = {k: len(v) for k, v in splits.items()}
    assert sizes == {"prompt": 10, "test": 500, "validation": 90, "train": 374}
    ids = [r["task_id"] for r in splits["train"]]
    assert min(ids) == 601 and max(ids) == 974
    row = splits["train"][0]
    assert row["test_list"][0] in row["prompt"] and "\r\n" not in row["completion"]


def test_mbpp_rows_read_the_same_with_windows_line_ends():
    """A row with CRLF in its text, tests or code gives the prompt and answer that the same
    row with plain '\n' gives (what the eval's prompts are built from)."""
    row = {"text": "Add two numbers.\r\nReturn it.", "code": "def add(a, b):\r\n    return a + b",
           "test_list": ["assert add(1, 2) == 3\r\n", "assert add(0, 0) == 0"]}  # fmt: skip
    plain = {k: v.replace("\r\n", "\n") if isinstance(v, str) else [t.replace("\r\n", "\n")
             for t in v] for k, v in row.items()}  # fmt: skip
    made, expected = mbpp_row(row), mbpp_row(plain)
    assert (made["prompt"], made["completion"]) == (expected["prompt"], expected["completion"])
    assert "\r" not in made["prompt"] + made["completion"]


@needs_shared
def test_canard_splits_by_dialog():
    splits = load_splits("canard", BadRows(False))
    dialogs = {k: {r["QuAC_dialog_id"] for r in v} for k, v in splits.items()}
    assert not dialogs["train"] & dialogs["validation"] and not dialogs["train"] & dialogs["test"]
    assert sum(len(v) for v in splits.values()) == 3430


@needs_shared
def test_quotes_are_prompt_completion():
    splits = load_splits("quotes", BadRows(False))
    assert sum(len(v) for v in splits.values()) == 100
    assert all(r["prompt"].startswith("Write a quote by") for r in splits["train"])


def test_py_functions_and_code_dir(tmp_path):
    src = tmp_path / "pkg"
    (src / "tests").mkdir(parents=True)
    body = 'def add(a, b):\n    """Add two numbers and return the sum."""\n    return a + b\n'
    (src / "m.py").write_text(body + "\ndef nodoc():\n    return 1\n")
    (src / "tests" / "t.py").write_text(body)
    (src / "broken.py").write_text("def (:\n")
    rows = [r for split in load_py_functions(src).values() for r in split]
    assert len(rows) == 1
    assert rows[0]["prompt"].startswith("Write a Python function `def add(a, b)`")
    assert rows[0]["completion"].startswith("def add(a, b):")
    texts = [r["text"] for split in load_code_dir(src).values() for r in split]
    assert any("def add" in t for t in texts)


def test_stdlib_mining_finds_many_functions():
    rows = [r for split in load_py_functions(Path("stdlib")).values() for r in split]
    assert len(rows) > 500


def test_malformed_rows_name_file_and_line(tmp_path, tok):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [{"prompt": "a", "completion": "b"}, "{oops", {"prompt": "c", "completion": ""}],
    )
    with pytest.raises(HonedError, match=r"d.jsonl:2: not valid JSON.*--skip-bad-rows"):
        prepare_data(str(path), tok, is_seq2seq=False)
    data = prepare_data(str(path), tok, is_seq2seq=False, skip_bad_rows=True, val_fraction=0.0)
    assert data.skipped == 2 and len(data.train) == 1


def test_validation_keeps_each_prompts_answers_together(tmp_path, tok):
    """Several answers to one prompt (teacher candidates, --targets both) all land on one side
    of the carved validation split; unique prompts split as before (a seeded share)."""
    rows = [{"prompt": f"question {q}", "completion": f"answer {a}"} for q in range(20)
            for a in range(3)]  # fmt: skip
    data = prepare_data(str(write_jsonl(tmp_path / "d.jsonl", rows)), tok, is_seq2seq=False,
                        val_fraction=0.2)  # fmt: skip
    prompts = [{str(e["prompt"]) for e in part} for part in (data.train, data.validation)]
    assert len(data.validation) == 12 and len(data.train) == 48
    assert len(prompts[1]) == 4 and not prompts[0] & prompts[1]
    with pytest.raises(HonedError, match="validation took every training row"):
        same = [{"prompt": "one", "completion": f"answer {a}"} for a in range(20)]
        prepare_data(str(write_jsonl(tmp_path / "s.jsonl", same)), tok, is_seq2seq=False)


def test_empty_and_missing_data(tmp_path, tok):
    with pytest.raises(HonedError, match="no training rows"):
        prepare_data(str(write_jsonl(tmp_path / "e.jsonl", [])), tok, is_seq2seq=False)
    with pytest.raises(HonedError, match="not found"):
        prepare_data(str(tmp_path / "missing.jsonl"), tok, is_seq2seq=False)
    with pytest.raises(HonedError, match="data 'nonsense' not found"):
        prepare_data("nonsense", tok, is_seq2seq=False)
    rows = [{"a": "x", "b": "y"}]
    with pytest.raises(HonedError, match="cannot tell prompt from answer"):
        prepare_data(str(write_jsonl(tmp_path / "f.jsonl", rows)), tok, is_seq2seq=False)


def test_templates(tmp_path, tok):
    fmt = parse_template("Task: {text}\nSolution:\n{code}")
    assert (fmt.prefix, fmt.answer_field) == ("Task: {text}\nSolution:\n", "code")
    with pytest.raises(HonedError, match="must end with the answer field"):
        parse_template("Answer: {code} (end)")
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "sum", "code": "def f(): pass"}] * 4)
    data = prepare_data(
        str(path),
        tok,
        is_seq2seq=False,
        template="Task: {text}\nSolution:\n{code}",
        val_fraction=0.0,
    )
    assert data.train[0] == {"prompt": "Task: sum\nSolution:\n", "completion": "def f(): pass"}
    chat = prepare_data(
        str(path), tok, is_seq2seq=False, system_prompt="Be brief.", val_fraction=0.0
    )
    assert chat.fmt.kind == "chat" and chat.train[0]["prompt"][0]["role"] == "system"
    assert choose_format("auto", tok, True, None).kind == "template"  # seq2seq: no chat
