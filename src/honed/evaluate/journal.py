"""What an interrupted code eval keeps, so that `honed eval --resume` generates only the rest.

Every generated sample is appended to JOURNAL in the eval's work directory (one JSON line,
flushed at once) before its program goes to the sandbox. An eval that stops (Ctrl-C, a
crash, a killed process) keeps its work directory when the journal holds anything, and
`--resume` first checks that the settings that shape generation (SETTINGS) are the same,
then generates only the (sample, problem) pairs the journal lacks. Every program is scored
again on resume: the sandbox is cheap next to generation, and a result is not carried
across runs. The finished eval's samples.jsonl holds all of them in the usual order.
The teacher's answers to text data (distill/textdata.py) keep a journal the same way,
keyed by the prompt's row number.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from honed.artifacts import MANIFEST
from honed.config import EvalConfig
from honed.errors import HonedError

log = logging.getLogger(__name__)
JOURNAL = "generated.jsonl"
SETTINGS = "generation.json"
SHAPES = (
    "task", "backend", "dtype", "n_samples", "temperature", "top_p", "max_new_tokens", "seed",
    "limit", "prompting", "template", "stop_at_code",
)  # fmt: skip
Row = dict[str, Any]


def settings(cfg: EvalConfig) -> dict[str, Any]:
    """What decides the samples: the model (and when its files last changed) and the
    generation settings; batch size, workers and timeouts do not take part."""
    found = {"model": cfg.model, "model_changed_ns": _changed(cfg.model)}
    return {**found, **{name: getattr(cfg, name) for name in SHAPES}}


def _changed(model: str) -> int | None:
    """mtime of a local model file, of a honed artifact's manifest (written last), or the
    newest of a plain model directory and its files (weights overwritten in place count);
    None for a hub id."""
    path = Path(model)
    if (path / MANIFEST).is_file():
        path = path / MANIFEST
    try:
        times = [path.stat().st_mtime_ns]
    except OSError:
        return None
    for entry in path.iterdir() if path.is_dir() else []:
        with contextlib.suppress(OSError):  # a dangling link
            times.append(entry.stat().st_mtime_ns)
    return max(times)


@dataclass
class Journal:
    """The samples generated so far, keyed by (sample number, task id or row number);
    `record` adds one (nothing is written without a path)."""

    path: Path | None
    done: dict[tuple[int, str | int], Row] = field(default_factory=dict)

    def record(self, row: Row) -> None:
        if self.path is None:
            return
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")

    def missing(self, sample: int, keys: list[Any]) -> list[int]:
        """Indexes of the keys (task ids or row numbers) without this sample yet."""
        return [i for i, key in enumerate(keys) if (sample, key) not in self.done]

    def kept(self) -> int:
        """How many samples a stopped eval leaves in the work directory."""
        return len(_read(self.path)) if self.path and self.path.is_file() else 0


def start(work: Path, cfg: EvalConfig) -> Journal:
    """A new journal, or with --resume the one an interrupted eval left in work, after
    checking that it was made with the same settings."""
    return begin(work, settings(cfg), cfg.resume)


def begin(work: Path, wanted: dict[str, Any], resume: bool) -> Journal:
    """The journal in work for samples made with `wanted` settings: empty (and those
    settings written down) unless resume, else the samples kept there, which must have been
    made with the same settings."""
    journal = Journal(work / JOURNAL)
    wanted = json.loads(json.dumps(wanted))
    if not resume:
        (work / JOURNAL).unlink(missing_ok=True)
        (work / SETTINGS).write_text(json.dumps(wanted, indent=2))
        return journal
    found = _settings_in(work)
    if found is None:
        raise HonedError(
            f"nothing to resume in '{work}' (no {SETTINGS}): pass --overwrite to start over"
        )
    differ = [name for name in wanted if found.get(name) != wanted[name]]
    if differ:
        name = differ[0]
        raise HonedError(
            f"the interrupted eval in '{work}' ran with {name} {found.get(name)!r}, not "
            f"{wanted[name]!r}: resume it with its own settings, or pass --overwrite to start over"
        )
    journal.done = {(row["sample"], row["task_id"]): row for row in _read(work / JOURNAL)}
    log.info("resuming: %d samples already generated in %s", len(journal.done), work)
    return journal


def resumable(work: Path, cfg: EvalConfig) -> bool:
    """True when work holds an interrupted eval's samples made with cfg's settings."""
    return matches(work, settings(cfg))


def matches(work: Path, wanted: dict[str, Any]) -> bool:
    """True when work holds samples made with the `wanted` settings."""
    same = _settings_in(work) == json.loads(json.dumps(wanted))
    return same and Journal(work / JOURNAL).kept() > 0


def _settings_in(work: Path) -> dict[str, Any] | None:
    try:
        return json.loads((work / SETTINGS).read_text())
    except (OSError, ValueError):
        return None


def _read(path: Path) -> list[Row]:
    """The journal's rows; a last line cut short by a killed process is dropped."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and {"sample", "task_id", "completion"} <= row.keys():
            rows.append(row)
    return rows


def close(work: Path) -> None:
    """A finished eval needs no journal: samples.jsonl holds everything."""
    for name in (JOURNAL, SETTINGS):
        (work / name).unlink(missing_ok=True)
