"""code:FILE, your own problems with tests: loading, prompts, fine-tune rows, bad input
(scoring: test_run.py)."""

from __future__ import annotations

import json

import pytest

from honed.data.sources import BadRows, load_splits
from honed.errors import HonedError
from honed.evaluate import own_tasks, tasks

ROWS = [
    {
        "task_id": "area",
        "text": "Write a function that returns the area of a circle of radius r.",
        "code": "import math\ndef circle_area(r):\n    return math.pi * r * r",
        "test_list": [
            "assert round(circle_area(1), 2) == 3.14",
            "assert math.isclose(circle_area(2), 12.566, rel_tol=1e-3)",
        ],
        "test_imports": ["import math"],
    },
    {  # no reference solution: enough to evaluate on, not to fine-tune on
        "text": "Write a function that reverses the words of a sentence.",
        "test_list": ["assert reverse_words('a b c') == 'c b a'"],
    },
]


@pytest.fixture
def problems_file(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    return path


def test_problems_load_in_mbpp_layout(problems_file):
    task = tasks.get_task(f"code:{problems_file}")
    first, second = task.load()
    assert [first.task_id, second.task_id] == ["area", "2"]  # ids as given, else the row number
    assert first.entry_point == "circle_area" and second.entry_point == "reverse_words"
    assert first.prompt == f"{ROWS[0]['text']}\nYour code should pass these tests:\n" + "\n".join(
        ROWS[0]["test_list"]
    )
    assert task.stops == tasks.MBPP_STOPS and task.chat_template == tasks.CHAT_MBPP
    assert tasks.normalize_task_id(task, 2) == "2"  # not renamed Mbpp/2 as MBPP's ids are


def test_the_function_under_test_is_the_one_the_asserts_call():
    tests = ["assert math.isclose(area(1.0), 3.14)", "assert sorted(area(2)) == [1]"]
    assert own_tasks.called_function(tests) == "area"  # not isclose (a method), not sorted


def test_fine_tune_rows_are_the_reference_solutions(problems_file):
    splits = load_splits(f"code:{problems_file}", BadRows(False))
    (row,) = splits["train"]  # the problem without code is left out
    assert row["completion"] == ROWS[0]["code"] and "Your code should pass" in row["prompt"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"text": "x", "test_list": []}], "'test_list' must be a non-empty list"),
        ([{"test_list": ["assert f()"]}], "no 'text'"),
        ([{"text": "x", "test_list": ["assert f()"], "code": 3}], "'code' must be a string"),
        ([{"task_id": 1, **ROWS[1]}, {"task_id": 1, **ROWS[1]}], "used twice"),
    ],
)
def test_bad_rows_are_one_line_errors_naming_the_line(tmp_path, rows, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(HonedError, match=message) as error:
        tasks.get_task(f"code:{path}").load()
    assert "bad.jsonl:" in str(error.value) and "\n" not in str(error.value)


def test_a_missing_file_or_no_reference_solutions(tmp_path):
    with pytest.raises(HonedError, match="no file .*code:FILE"):
        tasks.get_task(f"code:{tmp_path / 'nope.jsonl'}")
    path = tmp_path / "no-code.jsonl"
    path.write_text(json.dumps(ROWS[1]) + "\n")
    with pytest.raises(HonedError, match="no row has 'code'"):
        load_splits(f"code:{path}", BadRows(False))
