"""How each model's code answers look, next to how many pass: for `honed eval` folders (their
samples.jsonl), the share of answers with a comment, inside a ``` fence, and their mean
length in lines. Fine-tuning on MBPP's references (bare code, no comments) moves a model's
answers to that style; this shows by how much, and beside which scores. With `--against
EVAL`, each row also gives the problems lost and gained against that eval and how the lost
ones fail (the first word of the sandbox's message: AssertionError, NameError, ...).

    .venv/bin/python benchmarks/answer_style.py runs/distill-bench/logits/eval-teacher \
        runs/distill-bench/logits/eval-teacher-tuned ... [--against EVAL] [--title WORDS]

Prints the table and writes it to RESULTS.md as its own section.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from paired import paired, solved_problems  # noqa: E402
from results_md import command_line, replace_section  # noqa: E402


def read_samples(folder: Path) -> list[dict]:
    """An eval folder's samples.jsonl rows, or a one-line stop."""
    samples = folder / "samples.jsonl"
    if not samples.is_file():
        raise SystemExit(f"{samples} not found: pass a `honed eval` output folder")
    rows = [json.loads(line) for line in samples.read_text().splitlines() if line.strip()]
    if not rows:
        raise SystemExit(f"{samples} holds no answers: pass an eval folder that finished")
    return rows


def against(folder: Path, base: Path, rows: list[dict]) -> str:
    """'lost / gained (p), lost fail as: AssertionError 19, ...' against the base eval."""
    mine = solved_problems(folder / "samples.jsonl")
    theirs = solved_problems(base / "samples.jsonl")
    lost, gained, p = paired(theirs, mine)
    failed = Counter(failure(row) for row in rows if row["task_id"] in theirs - mine)
    how = ", ".join(f"{kind} {n}" for kind, n in failed.most_common())
    return f"{lost} / {gained} (p = {p:.2f}); {how or '-'}"


def failure(row: dict) -> str:
    """How an answer failed: the exception's name, or the result (timeout, error)."""
    message = (row.get("message") or "").split(":")[0].split()
    return message[0] if row["result"] == "failed" and message else row["result"]


def style(rows: list[dict]) -> dict[str, float]:
    """Answers, passed, with a '#' comment, fenced, mean lines of one eval's samples."""
    answers = [row["completion"] for row in rows]
    return {
        "answers": len(rows),
        "passed": sum(row["result"] == "passed" for row in rows),
        "commented": sum("#" in text for text in answers),
        "fenced": sum("```" in text for text in answers),
        "mean_lines": sum(text.count("\n") + 1 for text in answers) / len(rows),
    }


def markdown(title: str, found: dict[str, dict], base: str | None) -> str:
    rows = [
        f"| {name} | {s['answers']} | {s['passed']} | {s['commented']} | {s['fenced']} "
        f"| {s['mean_lines']:.1f} |" + (f" {s['against']} |" if base else "")
        for name, s in found.items()
    ]
    extra = f" lost / gained against {base}; how the lost fail |" if base else ""
    return "\n".join(
        [
            f"## Answer style: {title}",
            "",
            f"Written by `{command_line()}` from each eval folder's samples.jsonl (no model "
            "run). Commented: answers holding a `#`; fenced: inside a ``` block.",
            "",
            "| eval | answers | passed | commented | fenced | mean lines |" + extra,
            "|---|---|---|---|---|---|" + ("---|" if base else ""),
            *rows,
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evals", nargs="+", type=Path, help="honed eval output folders")
    parser.add_argument("--against", type=Path, help="an eval to count lost and gained against")
    parser.add_argument("--title", default="MBPP answers of the logits pair")
    args = parser.parse_args()
    found = {}
    for folder in args.evals:
        rows = read_samples(folder)
        found[folder.name] = style(rows)
        if args.against:
            found[folder.name]["against"] = against(folder, args.against, rows)
    text = markdown(args.title, found, args.against.name if args.against else None)
    print(text)
    replace_section(text.splitlines()[0], text)


if __name__ == "__main__":
    main()
