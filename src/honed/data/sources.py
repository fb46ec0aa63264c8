"""Read raw rows from a data spec: a jsonl/json file, an HF dataset, or a built-in format.

Every row keeps a `_where` field ("file:line") so a malformed row can be reported precisely.
Built-in formats live in `builtin.py`; this module dispatches and reads files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from honed.errors import HonedError
from honed.jsonl import json_objects

Row = dict[str, Any]
Splits = dict[str, list[Row]]


class BadRows:
    """Counts malformed rows when skipping is allowed; raises on the first one otherwise."""

    def __init__(self, skip: bool) -> None:
        self.skip = skip
        self.count = 0
        self.first: str | None = None

    def report(self, where: str, problem: str) -> None:
        """Record one bad row, or stop with a one-line error naming file and line."""
        if not self.skip:
            raise HonedError(f"{where}: {problem}: fix the row or pass --skip-bad-rows")
        self.count += 1
        self.first = self.first or f"{where}: {problem}"


def _iter_jsonl(path: Path, bad: BadRows) -> Iterator[Row]:
    for where, row in json_objects(path, bad.report):
        yield {**row, "_where": where}


def _iter_json(path: Path, bad: BadRows) -> Iterator[Row]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise HonedError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}): fix the file") from exc
    if isinstance(data, dict):
        data = data.get("data", data.get("rows"))
    if not isinstance(data, list):
        raise HonedError(f"{path}: expected a JSON array of rows (or {{'data': [...]}})")
    for index, row in enumerate(data):
        where = f"{path}:row {index + 1}"
        if not isinstance(row, dict):
            bad.report(where, "row is not a JSON object")
            continue
        yield {**row, "_where": where}


def read_file(path: Path, bad: BadRows) -> list[Row]:
    """All rows of a .jsonl or .json file."""
    if not path.is_file():
        raise HonedError(f"data file '{path}' not found: check the path")
    reader = _iter_jsonl if path.suffix == ".jsonl" else _iter_json
    return list(reader(path, bad))


def read_hf_dataset(name: str) -> Splits:
    """Load a dataset from the HF hub (or its local cache) as plain rows per split."""
    import datasets

    try:
        loaded = datasets.load_dataset(name)
    except Exception as exc:  # datasets raises many types for a missing/offline dataset
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HonedError(
            f"data '{name}' not found ({first}): pass a .jsonl/.json file, a built-in format "
            "(mbpp, quotes, canard, code:FILE, code-dir:PATH, py-functions:PATH) or a reachable HF "
            "dataset"
        ) from exc
    return {
        split: [{**row, "_where": f"{name}[{split}]:{i + 1}"} for i, row in enumerate(ds)]
        for split, ds in loaded.items()
    }


def load_splits(spec: str, bad: BadRows) -> Splits:
    """Rows per split for a data spec; `train` is always present, `validation` when known."""
    from honed.data import builtin

    kind, _, arg = spec.partition(":")
    if kind in builtin.PATH_FORMATS and arg:
        return builtin.PATH_FORMATS[kind](Path(arg).expanduser())
    if spec in builtin.NAMED_FORMATS:
        return builtin.NAMED_FORMATS[spec](bad)
    path = Path(spec).expanduser()
    if path.suffix in {".jsonl", ".json"} or path.exists():
        return {"train": read_file(path, bad)}
    if "/" in spec:
        return read_hf_dataset(spec)
    raise HonedError(
        f"data '{spec}' not found: pass a .jsonl/.json file, an HF dataset id, or one of "
        f"{', '.join(builtin.NAMED_FORMATS)}, code:FILE, code-dir:PATH, py-functions:PATH"
    )
