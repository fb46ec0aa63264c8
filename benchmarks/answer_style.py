"""How each model's code answers look, next to how many pass: for `honed eval` folders (their
samples.jsonl), the share of answers with a comment, inside a ``` fence, and their mean
length in lines. Fine-tuning on MBPP's references (bare code, no comments) moves a model's
answers to that style; this shows by how much, and beside which scores.

    .venv/bin/python benchmarks/answer_style.py runs/distill-bench/logits/eval-teacher \
        runs/distill-bench/logits/eval-teacher-tuned ... [--title WORDS]

Prints the table and writes it to RESULTS.md as its own section.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from results_md import command_line, replace_section  # noqa: E402


def style(samples: Path) -> dict[str, float]:
    """Answers, passed, with a '#' comment, fenced, mean lines of one eval's samples."""
    rows = [json.loads(line) for line in samples.read_text().splitlines() if line.strip()]
    if not rows:
        raise SystemExit(f"{samples} holds no answers: pass an eval folder that finished")
    answers = [row["completion"] for row in rows]
    return {
        "answers": len(rows),
        "passed": sum(row["result"] == "passed" for row in rows),
        "commented": sum("#" in text for text in answers),
        "fenced": sum("```" in text for text in answers),
        "mean_lines": sum(text.count("\n") + 1 for text in answers) / len(rows),
    }


def markdown(title: str, found: dict[str, dict[str, float]]) -> str:
    rows = [
        f"| {name} | {s['answers']} | {s['passed']} | {s['commented']} | {s['fenced']} "
        f"| {s['mean_lines']:.1f} |"
        for name, s in found.items()
    ]
    return "\n".join(
        [
            f"## Answer style: {title}",
            "",
            f"Written by `{command_line()}` from each eval folder's samples.jsonl (no model "
            "run). Commented: answers holding a `#`; fenced: inside a ``` block.",
            "",
            "| eval | answers | passed | commented | fenced | mean lines |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evals", nargs="+", type=Path, help="honed eval output folders")
    parser.add_argument("--title", default="MBPP answers of the logits pair")
    args = parser.parse_args()
    found = {}
    for folder in args.evals:
        samples = folder / "samples.jsonl"
        if not samples.is_file():
            raise SystemExit(f"{samples} not found: pass a `honed eval` output folder")
        found[folder.name] = style(samples)
    text = markdown(args.title, found)
    print(text)
    replace_section(text.splitlines()[0], text)


if __name__ == "__main__":
    main()
