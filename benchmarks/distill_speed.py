"""Decode speed of a distilled student against its teacher, like for like: both exported
by `honed quantize` from their float weights to the same GGUF types, benched in one run.

The teacher's shared file is one fixed type (Q4_K_M), and a ratio against it mixes the
gain of the smaller model with the cost of the student's own quantization type. Here each
type is compared with itself, next to the ratio of the decode rooflines (weight bytes read
per generated token), which is what a decode bound by memory bandwidth would give.

    .venv/bin/python benchmarks/distill_speed.py logits
    .venv/bin/python benchmarks/distill_speed.py logits --no-bench   # exports only

The student is `runs/distill-bench/MODE/distilled` (made by `distill_runs.py`); exports and
the bench go next to it and are reused when run again.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from distill_runs import PAIRS, WORK, WallTimes, export, forget_stale_bench, step  # noqa: E402
from local_models import ensure_local  # noqa: E402
from results_md import command_line, publish  # noqa: E402

FORMATS = ("gguf-f16", "gguf-q8_0", "gguf-q4_k_m")


def exports(mode: str, formats: list[str], times: dict[str, float]) -> dict[str, dict]:
    """{format: {"teacher": ref, "student": ref}}, each made once by `honed quantize`."""
    teacher, w = PAIRS[mode][0], WORK / mode
    made = {}
    for method in formats:
        short = method.removeprefix("gguf-")
        out = w / f"teacher-{short}"
        args = ("quantize", teacher, "--method", method, "--output", str(out), "--overwrite")
        made[method] = {
            "teacher": str(step(f"export teacher {short}", out, *args, times=times)),
            "student": export(f"student distilled {short}", w / "distilled", method, times),
        }
    return made


def bench(mode: str, refs: list[str], prompts: int, times: dict[str, float]) -> dict[str, dict]:
    """`honed bench` of every export in one run (each in its own process); rows by model."""
    out = WORK / mode / "speed-bench"
    forget_stale_bench(out, refs)
    args = ("--n-prompts", str(prompts), "--runs", "2", "--max-new-tokens", "64")
    step("bench", out, "bench", *refs, *args, "--output", str(out), "--overwrite", times=times)
    found = json.loads((out / "bench.json").read_text())
    return {"machine": found["machine"], **{r["model"]: r for r in found["results"]}}


def ratios(made: dict[str, dict], rows: dict[str, dict]) -> dict[str, dict]:
    """Per format: decode tok/s of both, the measured ratio and the roofline ratio."""
    table = {}
    for method, pair in made.items():
        t, s = rows[pair["teacher"]], rows[pair["student"]]
        speed = {k: r["decode_tok_s"]["median"] for k, r in (("teacher", t), ("student", s))}
        bound = {k: r["roofline"]["bound_tok_s"] for k, r in (("teacher", t), ("student", s))}
        table[method] = {
            "decode_tok_s": speed,
            "roofline_tok_s": bound,
            "parameters": {"teacher": t["parameters"], "student": s["parameters"]},
            "speed_ratio": speed["student"] / speed["teacher"],
            "roofline_ratio": bound["student"] / bound["teacher"],
        }
    return table


def markdown(record: dict) -> str:
    """One row per GGUF type: teacher and student speed, their ratio, the roofline ratio."""
    rows = [
        "| type | teacher tok/s | student tok/s | x teacher speed | roofline ratio "
        "| teacher share | student share |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, r in record["formats"].items():
        share = {k: r["decode_tok_s"][k] / r["roofline_tok_s"][k] for k in r["decode_tok_s"]}
        rows.append(
            f"| {method.removeprefix('gguf-').upper()} | {r['decode_tok_s']['teacher']:.1f} "
            f"| {r['decode_tok_s']['student']:.1f} | {r['speed_ratio']:.2f} "
            f"| {r['roofline_ratio']:.2f} | {share['teacher']:.0%} | {share['student']:.0%} |"
        )
    m = record["machine"]
    return "\n".join(
        [
            f"## Distillation speed, like for like ({record['mode']} mode)",
            "",
            f"Measured {record['date']} on {m.get('cpu')}, {m.get('threads')} threads; "
            f"`{record['command']}`: {record['teacher']} -> its distilled student, both "
            "exported by `honed quantize` from float weights to each GGUF type and benched in "
            "one `honed bench` run (8 prompts x 2 runs, 64 new tokens, llama.cpp). Roofline "
            "ratio: the student's decode bound over the teacher's (weight bytes per token), the "
            "ratio a decode bound by memory bandwidth would reach.",
            "",
            *rows,
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=sorted(PAIRS))
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    parser.add_argument("--prompts", type=int, default=8, help="bench prompts (2 runs each)")
    parser.add_argument("--no-bench", action="store_true", help="make the exports only")
    args = parser.parse_args()
    ensure_local(PAIRS[args.mode][0])
    times = WallTimes(WORK / args.mode / "speed_wall_s.json")
    made = exports(args.mode, args.formats, times)
    if args.no_bench:
        return
    refs = [ref for pair in made.values() for ref in pair.values()]
    rows = bench(args.mode, refs, args.prompts, times)
    record = {
        "benchmark": "distill_speed",
        "mode": args.mode,
        "teacher": PAIRS[args.mode][0],
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        "machine": rows.pop("machine"),
        "wall_s": dict(times),
        "formats": ratios(made, rows),
    }
    publish(
        record,
        f"distill_speed_{args.mode}.json",
        f"## Distillation speed, like for like ({args.mode} mode)",
        markdown(record),
    )


if __name__ == "__main__":
    main()
