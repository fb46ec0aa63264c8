"""A weight average ("model soup", WiSE-FT) of the plain fine-tune and a distilled student of
the logits pair, scored on MBPP exactly as distill_runs.py scores its students.

The plain student gains more of the problems the untrained student misses, the distilled
ones keep more of those it solves (RESULTS.md, lost and gained tables); averaging the two
students' weights (each LoRA adapter merged into the shared base first, so the average is
of the weight changes) asks whether one model can have both. Writes the soup as a float
model, exports it to GGUF Q8_0 with `honed quantize`, scores it with `honed eval` (chat
prompting, greedy, one prompt at a time), and compares its solved problems with the plain
student's, the distilled one's and the untrained student's, from their evals in the same
work folder. Prints and saves the record and puts its section in RESULTS.md.

    .venv/bin/python benchmarks/distill_soup.py runs/distill-bench/logits/plain \
        runs/distill-bench/logits/distilled-distilledlr0.0004 [--weight 0.5 --limit 150]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired import paired, solved_problems  # noqa: E402
from results_md import provenance, publish  # noqa: E402

HEADING = "## Distillation: a weight average of the plain and distilled students (logits mode)"


def soup(plain: Path, distilled: Path, weight: float, out: Path) -> None:
    """weight * plain + (1 - weight) * distilled, both merged into their base, saved to out."""
    import torch

    from honed.models.load import load_model
    from honed.models.resolve import resolve

    first = load_model(resolve(str(plain)), dtype="float32")
    second = load_model(resolve(str(distilled)), dtype="float32").model.state_dict()
    done = set()  # tied weights (one tensor under two names) are averaged once
    with torch.no_grad():
        for name, tensor in first.model.state_dict().items():
            if tensor.data_ptr() not in done:
                done.add(tensor.data_ptr())
                tensor.mul_(weight).add_(second[name], alpha=1.0 - weight)
    first.model.save_pretrained(out)
    first.tokenizer.save_pretrained(out)


def honed(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "honed"), *args], check=True)
    return time.perf_counter() - start


def eval_folder(student: Path) -> Path:
    """distill_runs.py's eval folder of a trained student (plain or distilled variant)."""
    w = student.parent
    name = "plain-fine-tune" if student.name == "plain" else student.name
    return w / f"eval-student-{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plain", type=Path)
    parser.add_argument("distilled", type=Path)
    parser.add_argument("--weight", type=float, default=0.5, help="the plain student's share")
    parser.add_argument("--limit", type=int, default=150)
    args = parser.parse_args()
    w = args.plain.parent
    out = w / f"soup-{args.distilled.name}-w{args.weight}"
    walls = {}
    if not (out / "config.json").is_file():
        start = time.perf_counter()
        soup(args.plain, args.distilled, args.weight, out)
        walls["average"] = time.perf_counter() - start
    q8 = out.with_name(out.name + "-q8_0")
    if not (q8 / "manifest.json").is_file():
        walls["export"] = honed("quantize", str(out), "--method", "gguf-q8_0", "--output",
                                str(q8), "--overwrite")  # fmt: skip
    scored = w / f"eval-{out.name}"
    if not (scored / "summary.json").is_file():
        walls["eval"] = honed("eval", str(q8), "--task", "mbpp", "--prompting", "chat",
                              "--batch-size", "1", "--limit", str(args.limit), "--output",
                              str(scored), "--overwrite")  # fmt: skip
    folders = {"untrained": w / "eval-student-before", "plain": eval_folder(args.plain),
               "distilled": eval_folder(args.distilled), "soup": scored}  # fmt: skip
    solved = {name: solved_problems(f / "samples.jsonl") for name, f in folders.items()}
    versus = {}
    for other in ("plain", "distilled", "untrained"):
        lost, gained, p = paired(solved[other], solved["soup"])
        versus[other] = {"lost": lost, "gained": gained, "mcnemar_p": round(p, 3)}
    record = {"benchmark": "distill_soup", **provenance(), "plain": str(args.plain),
              "distilled": str(args.distilled), "weight": args.weight, "limit": args.limit,
              "solved": {k: len(v) for k, v in solved.items()}, "soup_versus": versus,
              "wall_s": walls}  # fmt: skip
    publish(record, f"distill_soup-{args.distilled.name}-w{args.weight}.json", HEADING,
            section(record))  # fmt: skip


def section(r: dict) -> str:
    s, v = r["solved"], r["soup_versus"]
    rows = "\n".join(
        f"| {name} | {s[name]} | {v[name]['lost']} / {v[name]['gained']} | {v[name]['mcnemar_p']} |"
        for name in ("untrained", "plain", "distilled")
    )
    return (
        f"{HEADING}\n\nMeasured {r['date']} on {r['machine']['cpu']}, {r['machine']['cores']} "
        f"cores; `{r['command']}`: {r['weight']} x the plain student + {1 - r['weight']:g} x "
        f"`{r['distilled']}`, both merged into the base first, exported to GGUF Q8_0, scored "
        f"on the first {r['limit']} MBPP test problems as distill_runs.py scores (chat, greedy, "
        f"one prompt at a time). The soup solves **{s['soup']}**.\n\n"
        "| against | it solves | soup lost / gained | McNemar p |\n|---|---|---|---|\n"
        f"{rows}\n"
    )


if __name__ == "__main__":
    main()
