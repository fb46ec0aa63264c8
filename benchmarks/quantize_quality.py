"""HumanEval pass@1 of every quantized variant of a model against its float model.

Variants are the artifacts `benchmarks/quantize_speed.py` makes with `honed quantize` (under
runs/bench-quant/, made here if missing); each is scored with `honed eval` on the full
HumanEval (greedy, the same prompting for every variant, sandboxed) into
runs/quality/<model>-<variant>/. A finished eval is reused, so the script can be stopped
and resumed. The float model is the fp32 PyTorch copy honed quantizes from (for the shared
GGUF models: their weights dequantized to float).

    .venv/bin/python benchmarks/quantize_quality.py --model qwen2.5-coder-0.5b-instruct \
        --prompting base --variants float int8 int8@fp32 gguf-q8_0 gguf-q4_k_m

A variant named NAME@fp32 is NAME's artifact loaded with dtype fp32: for int8, torchao's
exact fp32 path instead of the fused kernel with bf16 activations that honed uses on a CPU
with native bf16.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from paired import paired, solved_problems  # noqa: E402
from quantize_speed import WORK, make_variant  # noqa: E402
from results_md import replace_section  # noqa: E402

from honed.artifacts import library_versions  # noqa: E402
from honed.bench.machine import cpu_name  # noqa: E402

OUT = Path("runs/quality")
TARGETS = {"int8": 0.01, "gguf-q8_0": 0.01, "gguf-q4_k_m": 0.03}  # the allowed drop
FP32 = "@fp32"


def variant_ref(model: str, variant: str) -> str:
    """The model reference of a variant ("float": the fp32 copy quantize starts from)."""
    if variant == "float":
        from honed.quantize.source import prepare_source

        return str(prepare_source(model, WORK).float_dir)
    return str(make_variant(model, variant.removesuffix(FP32), model)[0])


def score(model: str, variant: str, prompting: str) -> dict:
    """pass@1 of one variant (reusing a finished eval)."""
    from honed.config import EvalConfig
    from honed.evaluate.run import evaluate

    out = OUT / f"{model}-{variant}"
    summary = out / "summary.json"
    if not summary.is_file():
        ref = variant_ref(model, variant)
        print(f"evaluating {variant}: {ref}", file=sys.stderr, flush=True)
        cfg = EvalConfig(
            model=ref,
            task="humaneval",
            prompting=prompting,
            output=out,
            overwrite=True,
            dtype="float32" if variant == "float" or variant.endswith(FP32) else "auto",
        )
        evaluate(cfg)
    done = json.loads(summary.read_text())
    return {
        "pass@1": done["pass@k"]["pass@1"],
        "passed": done["counts"]["passed"],
        "problems": done["problems"],
        "backend": done["backend"],
        "wall_s": done["wall_s"],
        "tokens_per_s": done["tokens_per_s"],
        "output": str(out),
        "solved": sorted(solved_problems(out / "samples.jsonl")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--prompting", default="base", choices=["base", "chat"])
    parser.add_argument("--variants", nargs="+", default=["float", *TARGETS])
    args = parser.parse_args()
    results = {v: score(args.model, v, args.prompting) for v in args.variants}
    record = {
        "benchmark": "quantize_quality",
        "model": args.model,
        "prompting": args.prompting,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cpu": cpu_name()},
        "versions": library_versions(("torchao", "onnxruntime")),
        "results": results,
    }
    print(json.dumps(record, indent=2))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"quantize_quality_{args.model}.json").write_text(
        json.dumps(record, indent=2)
    )
    replace_section(f"## HumanEval of quantized variants: {args.model}", markdown(record))


def markdown(record: dict) -> str:
    """One row per variant: pass@1, the change against float, and the issue's target."""
    results = record["results"]
    base = results.get("float")
    rows = [
        "| variant | backend | pass@1 | passed | change vs float (points) | lost / gained "
        "| McNemar p | target | met |",
        "|---" * 9 + "|",
    ]
    for name, r in results.items():
        drop = (r["pass@1"] - base["pass@1"]) * 100 if base else None
        target = TARGETS.get(name.removesuffix(FP32))
        met = "" if drop is None or target is None else ("yes" if -drop <= target * 100 else "no")
        change = "" if drop is None or name == "float" else f"{drop:+.1f}"
        flips = " | "
        if base and name != "float":
            lost, gained, p = paired(base["solved"], r["solved"])
            flips = f"{lost} / {gained} | {p:.2f}"
        rows.append(
            f"| {name} | {r['backend']} | {r['pass@1']:.4f} | {r['passed']}/{r['problems']} "
            f"| {change} | {flips} | {'' if target is None else f'within {target * 100:.0f}'} "
            f"| {met} |"
        )
    return "\n".join(
        [
            f"## HumanEval of quantized variants: {record['model']}",
            "",
            f"Table written {record['date']} on {record['machine']['cpu']}; "
            f"`{record['command']}`. Finished evals are reused (each summary.json under "
            "runs/quality/ has the time it was scored).",
            f"Full HumanEval (164), greedy, {record['prompting']} prompting, 512 new tokens at "
            "most, sandboxed; the float row is the fp32 PyTorch model the variants were made from.",
            "Lost / gained: problems the float model solved that the variant does not, and the "
            "reverse; McNemar p: the exact two-sided probability of a split at least this "
            "uneven if the variant were as good as the float model (small p: a real drop).",
            "",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    main()
