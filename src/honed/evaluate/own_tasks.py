"""Your own code problems as a task: `code:FILE`, a .jsonl (or a .json list) in MBPP's layout.

Each row holds `text` (the problem in words) and `test_list` (assert lines, which name the
function under test), and may hold `code` (a reference solution: it names the function under
test, and fine-tuning on the file trains on it), `task_id` (default: the row's number),
`test_setup_code` and `test_imports`. Prompts, stops and test programs are MBPP's, so
`honed eval --task code:FILE` scores a model on the problems of your job, the sequence mode of
`honed distill --data code:FILE` has the teacher answer them (keeping what passes) and
`honed finetune --data code:FILE` trains on the reference solutions.
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections import Counter
from functools import cache
from pathlib import Path

from honed.data.builtin import mbpp_row
from honed.data.sources import BadRows, Row, read_file
from honed.errors import HonedError

PREFIX = "code:"
NOT_UNDER_TEST = set(dir(builtins)) | set(keyword.kwlist)


def file_of(task: str) -> Path:
    """The problems file a `code:FILE` task names."""
    path = Path(task.removeprefix(PREFIX)).expanduser()
    if not path.is_file():
        raise HonedError(
            f"task '{task}': no file '{path}': pass code:FILE, a .jsonl of problems with "
            "'text' and 'test_list' (assert lines)"
        )
    return path


def called_function(tests: list[str]) -> str:
    """The function the asserts call most (not a builtin, not a method)."""
    names = Counter(
        name
        for line in tests
        for name in re.findall(r"(?<![\w.])([A-Za-z_]\w*)\s*\(", line)
        if name not in NOT_UNDER_TEST
    )
    return names.most_common(1)[0][0] if names else ""


def checked_row(row: Row, number: int) -> dict:
    """One problem row in MBPP's layout, or a one-line error naming its place."""
    where = row.get("_where", f"row {number}")
    tests = row.get("test_list")
    if not isinstance(row.get("text"), str) or not row["text"].strip():
        raise HonedError(f"{where}: no 'text' (the problem in words): add it to every row")
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
        raise HonedError(f"{where}: 'test_list' must be a non-empty list of assert lines")
    code = row.get("code") or ""
    if not isinstance(code, str):
        raise HonedError(f"{where}: 'code' must be a string (a reference solution)")
    return {**row, "task_id": str(row.get("task_id", number)), "code": code}


@cache
def problem_rows(task: str) -> list[dict]:
    """Every row of the file, checked; task ids must be unique."""
    rows = [checked_row(r, n) for n, r in enumerate(read_file(file_of(task), BadRows(False)), 1)]
    seen: set[str] = set()
    for row in rows:
        if row["task_id"] in seen:
            where, task_id = row["_where"], row["task_id"]
            raise HonedError(f"{where}: task_id {task_id!r} used twice: make each unique")
        seen.add(row["task_id"])
    if not rows:
        raise HonedError(f"task '{task}': the file holds no problems")
    return rows


def training_rows(path: Path) -> list[Row]:
    """prompt/completion rows for fine-tuning: the problems that have a reference solution."""
    rows = problem_rows(f"{PREFIX}{path}")
    with_code = [mbpp_row(row) for row in rows if row["code"].strip()]
    if not with_code:
        raise HonedError(
            f"data 'code:{path}': no row has 'code' (a reference solution): fine-tuning needs "
            "them; eval and sequence distillation do not"
        )
    return with_code
