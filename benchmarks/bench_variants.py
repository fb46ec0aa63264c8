"""`honed bench` over SmolLM2-135M-Instruct and Qwen2.5-Coder-0.5B-Instruct in fp32, int8,
ONNX int8, GGUF F16, Q8_0 and Q4_K_M, with the share of the decode roofline each reaches.

Variants come from `honed quantize` (runs/bench-quant/, made if missing, shared with
quantize_speed.py); fp32 is the float copy they were made from. The table is honed bench's
own bench.md, copied into RESULTS.md with the best CPU variant's roofline share.

    .venv/bin/python benchmarks/bench_variants.py [--runs 3] [--n-prompts 8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from quantize_quality import variant_ref  # noqa: E402
from results_md import replace_section  # noqa: E402

from honed.bench.table import markdown  # noqa: E402

MODELS = ("smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct")
VARIANTS = ("float", "int8", "onnx-int8", "gguf-f16", "gguf-q8_0", "gguf-q4_k_m")
OUT = Path("runs/bench-variants")
HEADING = "## honed bench: every variant side by side"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n-prompts", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--rewrite", action="store_true", help="only rebuild RESULTS.md")
    args = parser.parse_args()
    saved = HERE / "results" / "bench_variants.json"
    if not args.rewrite:
        measure(args)
        saved.write_text((OUT / "bench.json").read_text())
    record = json.loads(saved.read_text())
    replace_section(HEADING, section(record, markdown(record)))


def measure(args: argparse.Namespace) -> None:
    """Make any missing variant, then run honed bench over all of them."""
    refs = [variant_ref(m, v) for m in MODELS for v in VARIANTS]
    honed = str(Path(sys.executable).parent / "honed")
    done = subprocess.run(
        [
            honed,
            "bench",
            *refs,
            "--output",
            str(OUT),
            "--overwrite",
            "--runs",
            str(args.runs),
            "--n-prompts",
            str(args.n_prompts),
            "--max-new-tokens",
            str(args.max_new_tokens),
        ],
    )
    if done.returncode not in (0, 1):  # 1: some variant failed, its row says why
        raise SystemExit(f"honed bench exited with status {done.returncode}")
    record = json.loads((OUT / "bench.json").read_text())
    replace_section(HEADING, section(record, (OUT / "bench.md").read_text()))


def section(record: dict, table: str) -> str:
    """bench.md under this file's heading, with the best roofline shares named."""
    body = table.split("\n", 1)[1].strip()  # drop bench.md's own title
    verdicts = [
        best_share(record, "any variant", lambda name: True),
        best_share(record, "the variants the issue names (all but F16)",
                   lambda name: "gguf-f16" not in name),
    ]  # fmt: skip
    verdict = " ".join(v for v in verdicts if v)
    notes = "\n".join(f"- {n}" for n in [*fastest_notes(record), *bound_notes(record)])
    return f"{HEADING}\n\n{body}\n\n{verdict}\n\n{notes}\n"


def best_share(record: dict, label: str, keep: Callable[[str], bool]) -> str:
    """The highest roofline share among the rows `keep` accepts, against the 70% target."""
    shares = [
        (r["roofline"]["share"], Path(r["model"]).name)
        for r in record["results"]
        if "error" not in r and r["roofline"].get("share") is not None and keep(r["model"])
    ]
    if not shares:
        return ""
    share, name = max(shares)
    verdict = "met" if share >= 0.70 else "not met"
    return f"Best share of the decode roofline, {label}: {share:.0%} ({name}); 70%: {verdict}."


def fastest_notes(record: dict) -> list[str]:
    """Per model: the fastest variant and the share of its own roofline it reaches."""
    notes = []
    for model in MODELS:
        rows = [r for r in record["results"] if "error" not in r and model in r["model"].lower()]
        rows = [r for r in rows if r["roofline"].get("share") is not None]
        if rows:
            top = max(rows, key=lambda r: r["decode_tok_s"]["median"])
            notes.append(
                f"{model}: fastest variant {Path(top['model']).name} at "
                f"{top['decode_tok_s']['median']:.1f} tok/s, {top['roofline']['share']:.0%} of "
                "its roofline."
            )
    return notes


def bound_notes(record: dict) -> list[str]:
    """Per model: Q4_K_M against Q8_0, bytes read per token and decode speed.

    If decode were bound by memory bandwidth, reading fewer bytes per token would make it
    faster in proportion; equal speeds mean the runtime is bound by compute instead.
    """
    rows = {r["model"]: r for r in record["results"] if "error" not in r}
    notes = [
        "The fp32 rows are the float copies the variants were made from (paths under "
        "~/.cache/honed/gguf)."
    ]
    for model in MODELS:
        q8 = rows.get(str(Path("runs/bench-quant") / f"{model}-gguf-q8_0"))
        q4 = rows.get(str(Path("runs/bench-quant") / f"{model}-gguf-q4_k_m"))
        if not (q8 and q4):
            continue
        bytes_ratio = q8["roofline"]["bytes_per_token"] / q4["roofline"]["bytes_per_token"]
        speed_ratio = q4["decode_tok_s"]["median"] / q8["decode_tok_s"]["median"]
        notes.append(
            f"{model}: Q4_K_M reads {bytes_ratio:.2f}x fewer weight bytes per token than Q8_0 "
            f"and decodes {speed_ratio:.2f}x as fast; a bandwidth-bound decode would be "
            f"{bytes_ratio:.2f}x as fast, so llama.cpp's decode at this thread count is bound "
            "by compute (dequantization and dot products), not by memory."
            if speed_ratio < 0.5 * (1 + bytes_ratio)
            else f"{model}: Q4_K_M reads {bytes_ratio:.2f}x fewer bytes per token than Q8_0 and "
            f"decodes {speed_ratio:.2f}x as fast."
        )
    return notes


if __name__ == "__main__":
    main()
