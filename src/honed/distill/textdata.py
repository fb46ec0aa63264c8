"""Sequence mode on data without tests: the teacher answers each training prompt.

Any prompt/answer dataset the fine-tune stage reads (a jsonl/json file, canard, an HF
dataset) works: the teacher answers each train-split prompt `candidates` times (in its chat
template when it has one, else the task template, cut at the template's next row), and
every distinct, non-empty answer becomes a prompt/completion row for the student. There is
no test to filter on, so nothing else is dropped; the reference answers are used only with
`--targets both` (with_references: for code data too, the data's answers plus the teacher's
kept ones). The rows and the settings that made them are kept in OUTPUT-teacher-data/ and
reused when run again with the same settings (a run stopped while the teacher answered
keeps each answer in a journal there and generates only the rest); the data's own
validation split, where it has one, is written there too (own_validation) and validates
the student.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from honed.config import DistillConfig, RuntimeConfig
from honed.data.format import detect_fields
from honed.data.sources import BadRows, load_splits
from honed.errors import HonedError
from honed.evaluate import journal
from honed.evaluate.journal import Journal
from honed.evaluate.report import write_jsonl
from honed.runtime.base import Backend, GenerationParams


def train_pairs(cfg: DistillConfig) -> list[tuple[str, str]]:
    """The (prompt, answer) pairs of the data's train split (at most max_samples); a row
    without a prompt is reported as bad, a missing answer is ''."""
    pairs = split_pairs(cfg, "train")
    if not pairs:
        raise HonedError(f"data '{cfg.data}' has no training rows: check the data")
    return pairs[: cfg.max_samples] if cfg.max_samples else pairs


def split_pairs(cfg: DistillConfig, split: str) -> list[tuple[str, str]]:
    """The (prompt, answer) pairs of one split of the data ([] when it has none)."""
    assert cfg.data is not None
    bad = BadRows(cfg.skip_bad_rows)
    rows = load_splits(cfg.data, bad).get(split) or []
    if not rows:
        return []
    try:
        key, answer = detect_fields(rows[0], cfg.prompt_field, cfg.completion_field)
    except HonedError as err:
        raise HonedError(f"the teacher needs prompts to answer: {err}") from None
    pairs = []
    for row in rows:
        prompt, completion = row.get(key), row.get(answer)
        if not isinstance(prompt, str) or not prompt.strip():
            bad.report(str(row.get("_where", cfg.data)), f"'{key}' is not a non-empty string")
            continue
        pairs.append((prompt, completion if isinstance(completion, str) else ""))
    return pairs


def own_validation(cfg: DistillConfig, where: Path) -> str | None:
    """The data's own validation split as a jsonl in `where`, so that training on the
    teacher's answers is validated on the rows a plain fine-tune of the data uses; None when
    the data has none (a share of the teacher's rows is held out instead)."""
    pairs = [(p, c.strip()) for p, c in split_pairs(cfg, "validation") if c.strip()]
    if not pairs:
        return None
    path = where / "validation.jsonl"
    write_jsonl(path, [{"prompt": p, "completion": c} for p, c in pairs])
    return str(path)


def train_prompts(cfg: DistillConfig) -> list[str]:
    """The prompts of the data's train split (at most max_samples)."""
    return [prompt for prompt, _ in train_pairs(cfg)]


def with_references(
    cfg: DistillConfig, teacher_rows: Path, made: dict[str, Any]
) -> tuple[Path, dict[str, Any]]:
    """`--targets both`: the data's own answers to the same prompts, then every kept teacher
    answer that differs from them, as one jsonl next to the teacher's; returns it and the
    counts."""
    rows = [{"prompt": p, "completion": c.strip()} for p, c in train_pairs(cfg) if c.strip()]
    seen = {(r["prompt"], r["completion"]) for r in rows}
    references = len(rows)
    for line in teacher_rows.read_text().splitlines():
        row = json.loads(line)
        pair = (row["prompt"], row["completion"].strip())
        if pair not in seen:
            seen.add(pair)
            rows.append({"prompt": pair[0], "completion": pair[1]})
    path = teacher_rows.with_name("train-with-references.jsonl")
    write_jsonl(path, rows)
    added = {"references": references, "teacher_rows_added": len(rows) - references}
    return path, {**made, **added, "rows": str(path)}


def settings(cfg: DistillConfig, prompts: list[str]) -> dict[str, Any]:
    """What the teacher's answers depend on (a rerun with the same reuses them)."""
    return {
        "teacher": cfg.teacher,
        "data": cfg.data,
        "prompts": len(prompts),
        "candidates": cfg.candidates,
        "temperature": cfg.teacher_temperature,
        "max_new_tokens": cfg.teacher_max_new_tokens,
        "seed": cfg.seed,
    }


def render(backend: Backend, prompts: list[str]) -> tuple[list[str], tuple[str, ...]]:
    """Prompts as the teacher reads them, and where its answer stops."""
    from honed.evaluate.tasks import template_prefix, text_stops

    if backend.has_chat_template:
        return [backend.chat_prompt([{"role": "user", "content": p}]) for p in prompts], ()
    prefix = template_prefix("task")
    return [prefix.format(prompt=p) for p in prompts], text_stops(prefix)


def answers(
    cfg: DistillConfig, backend: Backend, prompts: list[str], kept: Journal
) -> tuple[list, dict]:
    """Distinct non-empty teacher answers as rows, and the counts. Each answer goes to the
    journal as it comes; answers already there (a stopped run's) are not generated again."""
    from honed.evaluate.run import GenStats, generate_in_batches

    rendered, stops = render(backend, prompts)
    rows, seen, stats = [], set(), GenStats()
    for sample in range(cfg.candidates):
        params = GenerationParams(
            max_new_tokens=cfg.teacher_max_new_tokens,
            temperature=cfg.teacher_temperature,
            seed=cfg.seed + sample,
            stop=stops,
        )
        label = f"teacher: answer {sample + 1}/{cfg.candidates}"
        got = {i: row["completion"] for (s, i), row in kept.done.items() if s == sample}
        todo = kept.missing(sample, list(range(len(prompts))))
        batches = generate_in_batches(backend, [rendered[i] for i in todo], params, 8, stats, label)
        for j, text, _ in batches:
            kept.record({"sample": sample, "task_id": todo[j], "completion": text})
            got[todo[j]] = text
        for i, text in sorted(got.items()):
            if text.strip() and (i, text.strip()) not in seen:
                seen.add((i, text.strip()))
                rows.append({"prompt": prompts[i], "completion": text.strip()})
    counts = {"candidates": len(prompts) * cfg.candidates, "kept": len(rows)}
    reused = {"answers_reused": len(kept.done)} if kept.done else {}
    return rows, {
        **counts,
        "prompts_covered": len({i for i, _ in seen}),
        **stats.as_dict(),
        **reused,
    }


def text_teacher_data(
    cfg: DistillConfig, output: Path, backend: Backend | None = None
) -> tuple[Path, dict[str, Any]]:
    """Write the teacher's answers as a jsonl; returns its path and the counts."""
    from honed.runtime.configured import load_configured

    prompts = train_prompts(cfg)
    where = output.with_name(output.name + "-teacher-data")
    path, meta = where / "train.jsonl", where / "made.json"
    wanted = settings(cfg, prompts)
    if path.is_file() and meta.is_file():
        made = json.loads(meta.read_text())
        if made.get("settings") == wanted:
            return path, {**made["counts"], "reused": True, "rows": str(path)}
    where.mkdir(parents=True, exist_ok=True)
    kept = journal.begin(where, wanted, resume=journal.matches(where, wanted))
    owned = backend is None
    if backend is None:
        rc = RuntimeConfig(model=cfg.teacher, backend=cfg.teacher_backend, threads=cfg.threads)
        backend = load_configured(rc)
    try:
        rows, counts = answers(cfg, backend, prompts, kept)
    finally:
        if owned:
            backend.close()
    if not rows:
        raise HonedError("the teacher wrote only empty answers: check --teacher and its template")
    write_jsonl(path, rows)
    meta.write_text(json.dumps({"settings": wanted, "counts": counts}, indent=2))
    journal.close(where)
    return path, {**counts, "reused": False, "rows": str(path)}
