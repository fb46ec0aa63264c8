"""Built-in data formats: mbpp, quotes, canard, code:FILE, code-dir:PATH and py-functions:PATH.

Each returns rows with `prompt` and `completion` (or `text` for raw next-token training) plus
the original fields, split without leakage: MBPP by its standard task-id ranges, CANARD by
dialog id, code by file.
"""

from __future__ import annotations

import ast
import hashlib
import os
import sysconfig
from collections.abc import Callable
from pathlib import Path

from honed.data.sources import BadRows, Row, Splits, read_file, read_hf_dataset
from honed.errors import HonedError
from honed.progress import track

MBPP_RANGES = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}
SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "__pycache__", "idlelib", ".git"}


def data_dir_candidates() -> list[Path]:
    """Where shipped data files are looked for, in order."""
    found = [Path(os.environ["HONED_DATA_DIR"])] if os.environ.get("HONED_DATA_DIR") else []
    repo = Path(__file__).resolve().parents[3]
    return [
        *found,
        Path("data"),
        Path("../shared/data"),
        repo / "data",
        repo.parent / "shared/data",
    ]


def find_data_file(name: str) -> Path | None:
    """The first existing copy of a shipped data file, or None."""
    return next((d / name for d in data_dir_candidates() if (d / name).is_file()), None)


def bucket(key: str, buckets: int = 20) -> int:
    """A stable hash bucket for a key (same on every machine and run)."""
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % buckets


def split_by_key(rows: list[Row], key: Callable[[Row], str]) -> Splits:
    """5% test, 5% validation, 90% train by a stable hash of key(row): no group in two splits."""
    splits: Splits = {"train": [], "validation": [], "test": []}
    for row in rows:
        b = bucket(key(row))
        splits["test" if b == 0 else "validation" if b == 1 else "train"].append(row)
    return splits


def mbpp_row(row: Row) -> Row:
    """Prompt with the task text and its tests (they name the function); answer is the code.
    Windows line ends become '\n' everywhere, as in the eval's prompts (evaluate/tasks.py), so
    a row reads the same in training and in eval."""
    tests = "\n".join(row["test_list"])
    prompt = f"{row['text']}\nYour code should pass these tests:\n{tests}".replace("\r\n", "\n")
    return {**row, "prompt": prompt, "completion": row["code"].replace("\r\n", "\n")}


def load_mbpp(bad: BadRows) -> Splits:
    """MBPP with the standard split by task_id (1-10 prompt, 11-510 test, ...)."""
    path = find_data_file("mbpp.jsonl")
    rows = read_file(path, bad) if path else _mbpp_from_hub()
    splits: Splits = {name: [] for name in MBPP_RANGES}
    for row in rows:
        missing = [k for k in ("task_id", "text", "code", "test_list") if k not in row]
        if missing:
            bad.report(row["_where"], f"MBPP row lacks {', '.join(missing)}")
            continue
        for name, (lo, hi) in MBPP_RANGES.items():
            if lo <= int(row["task_id"]) <= hi:
                splits[name].append(mbpp_row(row))
    return splits


def _mbpp_from_hub() -> list[Row]:
    splits = read_hf_dataset("google-research-datasets/mbpp")
    return [row for rows in splits.values() for row in rows]


def canard_row(row: Row) -> Row:
    """Query rewriting: the conversation so far and a question -> a self-contained question."""
    history = "\n".join(row["History"])
    prompt = (
        "Rewrite the last question so that it can be understood without the conversation.\n"
        f"Conversation:\n{history}\nQuestion: {row['Question']}"
    )
    return {**row, "prompt": prompt, "completion": row["Rewrite"]}


def load_canard(bad: BadRows) -> Splits:
    """CANARD dev set, split by QuAC dialog id so no dialog is in two splits."""
    path = find_data_file("canard/dev.json")
    if path is None:
        raise HonedError("CANARD not found: set HONED_DATA_DIR to a folder with canard/dev.json")
    rows = []
    for row in read_file(path, bad):
        if not all(k in row for k in ("History", "Question", "Rewrite", "QuAC_dialog_id")):
            bad.report(
                row["_where"], "CANARD row lacks History, Question, Rewrite or QuAC_dialog_id"
            )
            continue
        rows.append(canard_row(row))
    return split_by_key(rows, lambda r: str(r["QuAC_dialog_id"]))


def quote_row(row: Row) -> Row:
    """Quote generation: author and tags -> the quote."""
    tags = ", ".join(row.get("tags") or []) or "life"
    prompt = f"Write a quote by {row['author'].rstrip(',')} about {tags}."
    return {**row, "prompt": prompt, "completion": row["quote"]}


def load_quotes(bad: BadRows) -> Splits:
    """English quotes (author, tags -> quote), split by a hash of the quote."""
    path = find_data_file("quotes.jsonl")
    rows = read_file(path, bad) if path else read_hf_dataset("Abirate/english_quotes")["train"]
    good = []
    for row in rows:
        if not isinstance(row.get("quote"), str) or not isinstance(row.get("author"), str):
            bad.report(row["_where"], "quote row lacks a 'quote' or 'author' string")
            continue
        good.append(quote_row(row))
    return split_by_key(good, lambda r: r["quote"])


def python_files(root: Path) -> list[Path]:
    """Python files under root, skipping tests, vendored packages and caches."""
    if root.as_posix() == "stdlib":
        root = Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise HonedError(f"'{root}' is not a directory: pass a folder of .py files")
    files = [
        p
        for p in sorted(root.rglob("*.py"))
        if not SKIP_DIRS.intersection(p.relative_to(root).parts[:-1]) and p.stat().st_size < 1 << 20
    ]
    if not files:
        raise HonedError(f"no .py files under '{root}': pass a folder of Python code")
    return files


def _chunks(text: str, limit: int = 2000) -> list[str]:
    """Split source at line boundaries into pieces of at most ~limit characters."""
    pieces, current = [], ""
    for line in text.splitlines(keepends=True):
        if current and len(current) + len(line) > limit:
            pieces.append(current)
            current = ""
        current += line
    return [*pieces, current] if current.strip() else pieces


def load_code_dir(root: Path) -> Splits:
    """Raw next-token training text from the .py files under root, split by file."""
    rows = []
    for path in track(python_files(root), "reading code"):
        text = path.read_text(encoding="utf-8", errors="replace")
        rows += [{"text": c, "file": str(path), "_where": str(path)} for c in _chunks(text)]
    return split_by_key(rows, lambda r: r["file"])


def function_pairs(path: Path) -> list[Row]:
    """Docstring -> function pairs from the top-level functions of one file."""
    source = path.read_text(encoding="utf-8", errors="replace")
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    rows = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        doc = ast.get_docstring(node)
        code = ast.get_source_segment(source, node)
        if not doc or len(doc) < 20 or not code or len(code) > 3000:
            continue
        signature = f"def {node.name}({ast.unparse(node.args)})"
        prompt = f"Write a Python function `{signature}`.\n{doc}"
        rows.append({"prompt": prompt, "completion": code, "file": str(path), "_where": str(path)})
    return rows


def load_py_functions(root: Path) -> Splits:
    """Docstring -> function pairs mined with ast (py-functions:stdlib mines the stdlib)."""
    files = python_files(root)
    rows = [row for path in track(files, "mining functions") for row in function_pairs(path)]
    return split_by_key(rows, lambda r: r["file"])


NAMED_FORMATS: dict[str, Callable[[BadRows], Splits]] = {
    "mbpp": load_mbpp,
    "quotes": load_quotes,
    "canard": load_canard,
}


def load_code_problems(path: Path) -> Splits:
    """code:FILE, your own problems with tests: the reference solutions, all of them train
    rows (validation is carved from them, or given with --eval-data)."""
    from honed.evaluate.own_tasks import training_rows

    return {"train": training_rows(path)}


PATH_FORMATS: dict[str, Callable[[Path], Splits]] = {
    "code": load_code_problems,
    "code-dir": load_code_dir,
    "py-functions": load_py_functions,
}
