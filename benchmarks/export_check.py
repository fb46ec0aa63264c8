"""Rerun `honed quantize`'s export checks on exports already made: greedy agreement (exact,
and with near-tie flips apart), first divergence, the source's margin there, and the mean
next-token KL, for each SOURCE:EXPORT pair, against the float model it came from.

Exports written before a change to the checks keep the checks of their day in their manifest;
this recomputes them with the current code, without exporting again. Prints a table, saves
benchmarks/results/export_check.json and, with --section, replaces that RESULTS.md section.

    .venv/bin/python benchmarks/export_check.py \
        runs/distill-bench/sequence/plain:runs/distill-bench/sequence/plain-q8_0 --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from results_md import provenance, replace_section  # noqa: E402

from honed.quantize.checks import Thresholds, run_checks  # noqa: E402
from honed.quantize.methods import GGUF_OPTIONS  # noqa: E402
from honed.runtime.base import load_backend  # noqa: E402

HEADING = "## Export checks: greedy flips at near-ties"


def check(pair: str, threads: int, limits: Thresholds) -> dict:
    """The checks of one SOURCE:EXPORT pair (a GGUF export: its .gguf file is found)."""
    source, _, export = pair.partition(":")
    path = Path(export)
    gguf = next(path.glob("*.gguf"), path) if path.is_dir() else path
    src = load_backend(source, backend="transformers", dtype="float32")
    exp = load_backend(str(gguf), backend="llama.cpp", n_threads=threads, **GGUF_OPTIONS)
    try:
        found = run_checks(src, exp, source_path=Path(source), export_path=gguf, limits=limits)
    finally:
        exp.close()
        src.close()
    return {"source": source, "export": export, **found}


def markdown(record: dict) -> str:
    rows = [
        "| export | exact match | near-tie flips | agreement | first divergence (token) "
        "| source margin there (nats) | mean KL | warnings |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in record["results"]:
        a = r["agreement"]
        margins = ", ".join("-" if m is None else f"{m:.3f}" for m in a["margin_nats"])
        first = ", ".join("-" if d is None else str(d) for d in a["first_divergence"])
        warned = "; ".join(r["warnings"]) or "none"
        rows.append(
            f"| {r['export']} | {a['exact_match']:.0%} | {a['near_ties']} | {a['agreement']:.0%} "
            f"| {first} | {margins} | {r['kl']['mean_kl']:.4f} | {warned} |"
        )
    return "\n".join([
        HEADING, "",
        f"Measured {record['date']} on {record['machine']['cpu']}, {record['machine']['cores']} "
        f"cores; `{record['command']}`. Each export against its float source, as `honed "
        f"quantize` checks it: {record['prompts']} fixed prompts, greedy, "
        f"{record['max_new_tokens']} new tokens; a "
        f"flip counts as a near-tie when the source ranks the export's token within "
        f"{record['near_tie_nats']} nats of its own.", "",
        *rows,
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="+", metavar="SOURCE:EXPORT")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--section", action="store_true", help="write the RESULTS.md section")
    args = parser.parse_args()
    limits = Thresholds()
    results = [check(pair, args.threads, limits) for pair in args.pairs]
    record = {
        "benchmark": "export_check",
        **provenance(("llama-cpp-python",)),
        "near_tie_nats": limits.near_tie_nats,
        "prompts": results[0]["agreement"]["prompts"],
        "max_new_tokens": results[0]["agreement"]["max_new_tokens"],
        "results": results,
    }
    print(markdown(record))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "export_check.json").write_text(json.dumps(record, indent=2))
    if args.section:
        replace_section(HEADING, markdown(record))


if __name__ == "__main__":
    main()
