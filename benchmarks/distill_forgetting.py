"""Where the distilled and plain students' scores come from: for every recorded
`distill_runs.py` run, the problems each trained student lost and gained against the
untrained student it started from, on the same test problems.

A student's pass count is (untrained) - lost + gained, so this splits "gap closed" into
what fine-tuning taught (gained) and what it cost (lost). The last columns give the score
the issue-6 target asks of the distilled student (plain + 30% of teacher - plain) and the
problems that either the untrained or the plain student solves: a distilled student that
kept all the first and learned all the second would score that many.

    .venv/bin/python benchmarks/distill_forgetting.py [--mode logits|sequence] [--task mbpp]

Reads benchmarks/results/distill_MODE*.json (written by distill_runs.py); prints the table
and writes it to RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from distill_md import TASK_NAMES, by_task  # noqa: E402
from paired import paired  # noqa: E402
from results_md import command_line, replace_section  # noqa: E402

PLAIN, DISTILLED = "student plain fine-tune", "student distilled"
BEFORE, TEACHER = "student before", "teacher"


def runs(mode: str, task: str) -> list[tuple[str, dict]]:
    """(run name, record) for every result file of the mode with solved lists for the task."""
    found = []
    for path in sorted((HERE / "results").glob(f"distill_{mode}*.json")):
        record = json.loads(path.read_text())
        solved = by_task(record, "solved").get(task, {})
        if record.get("benchmark") == "distill_runs" and {BEFORE, PLAIN, DISTILLED} <= set(solved):
            name = path.stem.removeprefix(f"distill_{mode}").strip("-_") or "standard"
            found.append((name, record))
    return found


def row(name: str, record: dict, task: str) -> str:
    """One table row: counts solved, lost / gained against the untrained student."""
    solved = {k: set(v) for k, v in by_task(record, "solved")[task].items()}
    before = solved[BEFORE]
    problems = str(record["settings"]["limit"]) if task == "mbpp" else "all"
    cpu = record.get("machine", {}).get("cpu", "not recorded")
    cells = [name, cpu, problems, str(len(before))]
    for student in (PLAIN, DISTILLED):
        lost, gained, _ = paired(before, solved[student])
        cells += [str(len(solved[student])), f"{lost} / {gained}"]
    _, _, p = paired(solved[PLAIN], solved[DISTILLED])
    teacher = len(solved[TEACHER]) if TEACHER in solved else None
    plain = len(solved[PLAIN])
    target = math.ceil(plain + 0.3 * (teacher - plain)) if teacher is not None else None
    cells += [f"{p:.2f}", str(teacher), str(target), str(len(before | solved[PLAIN]))]
    return "| " + " | ".join(cells) + " |"


def markdown(mode: str, task: str, rows: list[str]) -> str:
    """The RESULTS.md section: heading, what the columns mean, the table."""
    head = (
        "| run | machine | problems | untrained | plain | plain lost / gained | distilled "
        "| distilled lost / gained | McNemar p (distilled vs plain) | teacher "
        "| target (30% of gap) | untrained or plain |"
    )
    return "\n".join(
        [
            f"## Distillation: lost and gained against the untrained student ({mode} mode, "
            f"{TASK_NAMES.get(task, task)})",
            "",
            f"Written by `{command_line()}` from benchmarks/results/distill_{mode}*.json; "
            "each run's own section has its command and settings. Problems: the first N "
            "of the test split scored (all: the whole task). Lost / gained: problems the "
            "untrained student solves that the trained one does not, and the reverse. "
            "Untrained or plain: problems either solves, what a distilled student would "
            "score that kept the first and learned the second.",
            "",
            head,
            "|---" * head.count(" | ") + "|---|",
            *rows,
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="logits", choices=("logits", "sequence"))
    parser.add_argument("--task", default="mbpp", choices=sorted(TASK_NAMES))
    args = parser.parse_args()
    found = runs(args.mode, args.task)
    if not found:
        raise SystemExit(f"no distill_runs.py results for {args.mode} mode on {args.task}")
    rows = [row(name, record, args.task) for name, record in found]
    text = markdown(args.mode, args.task, rows)
    print(text)
    replace_section(text.splitlines()[0], text)


if __name__ == "__main__":
    main()
