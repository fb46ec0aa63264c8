"""Sequence mode: the teacher writes the training data, and for code only what passes stays.

The teacher answers every MBPP train problem (or every problem of a `code:FILE`, your own
problems with tests) `candidates` times (honed eval on the mbpp-train or code:FILE task:
sampled, sandboxed, scored); the candidates that pass their tests become prompt/completion
rows (deduplicated) that the student is fine-tuned on. Works across tokenizers, since only
text passes between the models. The teacher's eval is kept next to the output
(OUTPUT-teacher-data/) and reused when run again with the same settings; one that was
stopped continues where it stopped (the eval's --resume).
Other data (no tests to run) goes through textdata.py: every distinct answer is kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from honed import artifacts
from honed.config import DistillConfig, EvalConfig
from honed.errors import HonedError
from honed.evaluate import journal, own_tasks, tasks
from honed.evaluate.report import write_jsonl
from honed.runtime.base import Backend

CODE_DATA = {"mbpp": "mbpp-train", "mbpp-train": "mbpp-train"}


def code_task(data: str) -> str | None:
    """The code task whose problems the teacher answers for this data (None: not code)."""
    return data if data.startswith(own_tasks.PREFIX) else CODE_DATA.get(data)


def teacher_task(cfg: DistillConfig) -> str:
    """The task the teacher is run on: the data's code task, with `--teacher-hint` the same
    problems with their reference answers shown (`hinted:TASK`)."""
    task = code_task(cfg.data)
    if task is None:
        if cfg.teacher_hint:
            raise HonedError(
                "--teacher-hint shows the teacher each problem's reference answer: use code "
                "data (mbpp, code:FILE with a `code` field), or leave it out"
            )
        return cfg.data
    return tasks.HINTED + task if cfg.teacher_hint else task


def eval_config(cfg: DistillConfig, where: Path) -> EvalConfig:
    """The teacher's run over the training problems."""
    return EvalConfig(
        model=cfg.teacher,
        backend=cfg.teacher_backend,
        task=teacher_task(cfg),
        n_samples=cfg.candidates,
        k="1",
        temperature=cfg.teacher_temperature,
        max_new_tokens=cfg.teacher_max_new_tokens,
        limit=cfg.max_samples,
        seed=cfg.seed,
        output=where,
        overwrite=True,
        threads=cfg.threads,
    )


def reusable(where: Path, ecfg: EvalConfig) -> bool:
    """True when where holds a finished teacher run with these settings."""
    try:
        summary = json.loads((where / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    p = summary.get("params", {})
    wanted = {
        "n_samples": ecfg.n_samples,
        "temperature": ecfg.temperature,
        "limit": ecfg.limit,
        "max_new_tokens": ecfg.max_new_tokens,
        "seed": ecfg.seed,
    }
    same = all(p.get(k) == v for k, v in wanted.items()) and summary.get("task") == ecfg.task
    return same and summary.get("model") == ecfg.model and (where / "samples.jsonl").is_file()


def kept_rows(where: Path, task_name: str) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Prompt/completion rows of the passing candidates (one per distinct solution). The
    rows' prompts are the problems' own, without the hint a `hinted:` teacher saw."""
    task = tasks.get_task(task_name)
    problems = {p.task_id: p for p in tasks.get_task(tasks.unhinted(task_name)).load()}
    rows, seen, counts = [], set(), {"candidates": 0, "passed": 0, "kept": 0}
    for line in (where / "samples.jsonl").read_text().splitlines():
        sample = json.loads(line)
        counts["candidates"] += 1
        if sample.get("result") != "passed":
            continue
        counts["passed"] += 1
        problem = problems[sample["task_id"]]
        code = tasks.solution(task, problem, sample["completion"], sample["prompting"]).strip()
        if (problem.task_id, code) in seen:
            continue
        seen.add((problem.task_id, code))
        rows.append({"task_id": problem.task_id, "prompt": problem.prompt, "completion": code})
    counts["kept"] = len(rows)
    counts["problems_covered"] = len({r["task_id"] for r in rows})
    return rows, counts


def teacher_data(
    cfg: DistillConfig, output: Path, backend: Backend | None = None
) -> tuple[Path, dict[str, Any]]:
    """Write the teacher's passing answers as a jsonl; returns its path and the counts."""
    from honed.evaluate.run import evaluate

    if code_task(cfg.data) is None:
        from honed.distill.textdata import text_teacher_data

        return text_teacher_data(cfg, output, backend)
    where = output.with_name(output.name + "-teacher-data")
    ecfg = eval_config(cfg, where)
    reused = reusable(where, ecfg)
    if not reused:
        resume = journal.resumable(artifacts.tmp_dir_for(where), ecfg)
        evaluate(ecfg.model_copy(update={"resume": resume}), backend)
    rows, counts = kept_rows(where, ecfg.task)
    if not rows:
        raise HonedError(
            f"none of the teacher's {counts['candidates']} answers passed their tests: use a "
            "stronger teacher, more --candidates, or another --teacher-temperature"
        )
    path = where / "train.jsonl"
    write_jsonl(path, rows)
    return path, {**counts, "eval": str(where), "reused": reused, "rows": str(path)}
