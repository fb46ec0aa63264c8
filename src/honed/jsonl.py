"""JSON Lines in, with a place for every row: the one reader of user-given .jsonl files, so a
bad line reads the same wherever it turns up ("FILE:LINE: not valid JSON (...)")."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def json_objects(
    path: Path, bad: Callable[[str, str], None], name: str = "{path}:{line}"
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, row) for each JSON object line of `path`, blank lines skipped; any other line
    goes to `bad(where, problem)`, which raises to stop or returns to skip it. `name`
    formats where a row came from, from {path} and {line}."""
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = name.format(path=path, line=lineno)
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                bad(where, f"not valid JSON ({exc.msg})")
                continue
            if not isinstance(row, dict):
                bad(where, "row is not a JSON object")
                continue
            yield where, row
