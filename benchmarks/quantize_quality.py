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

`--n-samples N --temperature T` scores sampled pass@1 instead (N completions per problem,
nucleus 0.95, sample i of every problem seeded alike in every variant), the lower-variance
estimate of the Codex paper; the change against float then comes with a 95% interval over
the paired per-problem pass rates. Each sampled pass is its own eval, in
runs/quality/<model>-<variant>-tT-sI/, so a long run resumes pass by pass; each finished pass
(greedy ones too) is also kept, summary and per-problem outcome, in
benchmarks/results/quality_passes/ to be committed, so a run that outlasts a session (and its
machine's runs/) resumes there in the next. Within a runtime
the seeds are common random numbers (a completion depends only on its prompt and seed), so
a GGUF variant is also compared with gguf-f16, the same float weights in llama.cpp: that
change is the quantization's alone, while the change against float also holds the runtimes'
numerical differences. `--finished-only` writes the table from the passes every variant has
finished so far, without running anything.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from paired import paired, paired_change, pass_rates  # noqa: E402
from quantize_speed import WORK, make_variant  # noqa: E402
from results_md import provenance, replace_section  # noqa: E402

OUT = Path("runs/quality")
PASSES = HERE / "results" / "quality_passes"  # each finished pass, kept in the repository
SEED = 42
TARGETS = {"int8": 0.01, "gguf-q8_0": 0.01, "gguf-q4_k_m": 0.03}  # the allowed drop
FP32 = "@fp32"


def variant_ref(model: str, variant: str) -> str:
    """The model reference of a variant ("float": the fp32 copy quantize starts from)."""
    if variant == "float":
        from honed.quantize.source import prepare_source

        return str(prepare_source(model, WORK).float_dir)
    return str(make_variant(model, variant.removesuffix(FP32), model)[0])


def out_dir(model: str, variant: str, temperature: float, sample: int = 0) -> Path:
    """Where one eval of a variant goes (greedy evals keep the plain name)."""
    suffix = "" if temperature == 0 else f"-t{temperature:g}-s{sample}"
    return OUT / f"{model}-{variant}{suffix}"


def run_eval(model: str, variant: str, prompting: str, out: Path, temperature: float,
             sample: int) -> dict:  # fmt: skip
    """One completion per problem (sample i seeded SEED + i), reused when finished."""
    from honed.config import EvalConfig
    from honed.evaluate.run import evaluate

    summary, kept = out / "summary.json", kept_pass(out)
    if kept.is_file() and not summary.is_file():
        return json.loads(kept.read_text())["summary"]
    if not summary.is_file():
        ref = variant_ref(model, variant)
        print(f"evaluating {variant} ({out.name}): {ref}", file=sys.stderr, flush=True)
        cfg = EvalConfig(
            model=ref,
            task="humaneval",
            prompting=prompting,
            output=out,
            overwrite=True,
            dtype="float32" if variant == "float" or variant.endswith(FP32) else "auto",
            temperature=temperature,
            top_p=0.95 if temperature else 1.0,
            seed=SEED + sample,
        )
        evaluate(cfg)
    done = json.loads(summary.read_text())
    keep_pass(out, done)
    return done


def kept_pass(out: Path) -> Path:
    """Where one finished pass's summary and per-problem outcome are kept in the repository."""
    return PASSES / f"{out.name}.json"


def keep_pass(out: Path, summary: dict) -> None:
    """Save a finished pass (summary, per-problem pass rate) under benchmarks/results, to be
    committed: runs/ does not outlive the machine, and a sampled comparison on this CPU takes
    longer than one session, so the next session resumes from the passes kept here."""
    record = {"summary": summary, "rates": pass_rates(out / "samples.jsonl")}
    PASSES.mkdir(parents=True, exist_ok=True)
    kept_pass(out).write_text(json.dumps(record, indent=1, sort_keys=True))


def score(model: str, variant: str, prompting: str, n: int = 1, temperature: float = 0.0) -> dict:
    """pass@1 of one variant: greedy, or the mean of n sampled passes, each its own eval so
    that a long run resumes pass by pass."""
    outs = [out_dir(model, variant, temperature, i) for i in range(n)]
    done = [run_eval(model, variant, prompting, out, temperature, i) for i, out in enumerate(outs)]
    passes = [json.loads(kept_pass(out).read_text())["rates"] for out in outs]
    rates = {task: sum(p[task] for p in passes) / n for task in passes[0]}
    return {
        "pass@1": sum(rates.values()) / len(rates),
        "passed": sum(d["counts"]["passed"] for d in done),
        "problems": done[0]["problems"],
        "backend": done[0]["backend"],
        "wall_s": sum(d["wall_s"] for d in done),
        "tokens_per_s": sum(d["tokens_per_s"] for d in done) / n,
        "output": [str(out) for out in outs] if n > 1 else str(outs[0]),
        "solved": sorted(task for task, rate in rates.items() if rate > 0),
        "rates": rates,
    }


def finished_passes(model: str, variants: list[str], temperature: float) -> int:
    """How many sampled passes, counted from the first, every variant has finished."""
    n = 0
    while all(kept_pass(out_dir(model, v, temperature, n)).is_file() for v in variants):
        n += 1
    if n == 0:
        sys.exit("no variant has a finished sampled pass yet: run without --finished-only")
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--prompting", default="base", choices=["base", "chat"])
    parser.add_argument("--variants", nargs="+", default=["float", *TARGETS])
    parser.add_argument("--n-samples", type=int, default=1, help="completions per problem")
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    parser.add_argument("--finished-only", action="store_true",
                        help="run nothing: write the table from the sampled passes that every "
                        "variant has finished")  # fmt: skip
    args = parser.parse_args()
    if (args.n_samples > 1) != (args.temperature > 0):
        parser.error("sample with both --n-samples > 1 and --temperature > 0, or neither")
    planned = args.n_samples
    if args.finished_only:
        args.n_samples = finished_passes(args.model, args.variants, args.temperature)
    sampling = (args.n_samples, args.temperature)
    for i in range(args.n_samples):  # pass by pass: an interrupted run has whole passes done
        for v in args.variants:
            out = out_dir(args.model, v, args.temperature, i)
            run_eval(args.model, v, args.prompting, out, args.temperature, i)
    results = {v: score(args.model, v, args.prompting, *sampling) for v in args.variants}
    record = {
        "benchmark": "quantize_quality",
        "model": args.model,
        "prompting": args.prompting,
        "n_samples": args.n_samples,
        "planned_samples": planned,
        "temperature": args.temperature,
        **provenance(("torchao", "onnxruntime")),
        "results": results,
    }
    name = args.model + (f"-n{args.n_samples}-t{args.temperature:g}" if args.temperature else "")
    saved = HERE / "results" / f"quantize_quality_{name}.json"
    carry_rows(record, saved)
    print(json.dumps(record, indent=2))
    saved.parent.mkdir(exist_ok=True)
    saved.write_text(json.dumps(record, indent=2))
    table = markdown(record) if args.temperature == 0 else sampled_markdown(record)
    replace_section(table.splitlines()[0], table)


def carry_rows(record: dict, saved: Path) -> None:
    """Keep the variants of the saved record of the same model, prompting and sampling that
    this run did not score (their evals may be gone from runs/): a long comparison can be run
    variant group by variant group, in different sessions."""
    if not saved.is_file():
        return
    old = json.loads(saved.read_text())
    defaults = {"n_samples": 1, "temperature": 0.0}  # records from before these were kept
    same = ("prompting", "n_samples", "temperature")
    if any(old.get(key, defaults.get(key)) != record[key] for key in same):
        return
    for name, result in old["results"].items():
        if name not in record["results"]:
            scored = result.get("scored", old["date"])
            record["results"][name] = {**result, "scored": scored}
            record.setdefault("carried", {})[name] = scored


def markdown(record: dict) -> str:
    """One row per variant: pass@1, the change against float, and the issue's target."""
    results = record["results"]
    base = results.get("float")
    rows = [
        "| variant | backend | pass@1 | passed | change vs float (points) | lost / gained "
        "| McNemar p | target | met |",
        "|---" * 9 + "|",
    ]
    for name in sorted(results, key=lambda name: name != "float"):
        r = results[name]
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
            f"runs/quality/ has the time it was scored).{carried_note(record)}",
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


SAME_RUNTIME = "gguf-f16"  # the float weights in llama.cpp: the GGUF variants' own reference


def references(name: str, results: dict) -> list[str]:
    """What a variant is compared with: the float model, and for a llama.cpp variant also the
    F16 GGUF, the same weights in the same runtime (so the change is the quantization's)."""
    refs = ["float"] if name != "float" and "float" in results else []
    if name.startswith("gguf-") and name != SAME_RUNTIME and SAME_RUNTIME in results:
        refs.append(SAME_RUNTIME)
    return refs


def change_cells(results: dict, name: str, ref: str) -> tuple[str, float]:
    """'+x.x (+a.a to +b.b)' points against ref, and the mean change in points."""
    if ref not in references(name, results):
        return "", 0.0
    mean, half = (100 * x for x in paired_change(results[ref]["rates"], results[name]["rates"]))
    return f"{mean:+.1f} ({mean - half:+.1f} to {mean + half:+.1f})", mean


def sampled_row(results: dict, name: str, n: int) -> str:
    """One variant: pass@1, its change against each reference, target and verdict."""
    r = results[name]
    vs_float, drop_float = change_cells(results, name, "float")
    vs_f16, drop_f16 = change_cells(results, name, SAME_RUNTIME)
    target = TARGETS.get(name.removesuffix(FP32))
    judged = drop_f16 if vs_f16 else drop_float  # the quantization's own change, where known
    met = "" if target is None or not (vs_f16 or vs_float) else (
        "yes" if -judged <= target * 100 else "no")  # fmt: skip
    within = "" if target is None else f"within {target * 100:.0f}"
    return (
        f"| {name} | {r['backend']} | {r['pass@1']:.4f} | {r['passed']}/{r['problems'] * n} "
        f"| {vs_float} | {vs_f16} | {within} | {met} |"
    )


def so_far(record: dict) -> str:
    """', the first N of M planned passes' when the table was written from an unfinished run."""
    planned, n = record.get("planned_samples", record["n_samples"]), record["n_samples"]
    return (
        f" (the first {n} of {planned} planned passes: the rest are not run yet)"
        if planned > n
        else ""
    )


def carried_note(record: dict) -> str:
    """' Rows kept from an earlier run ...: NAME (scored DATE), ...' when some were carried."""
    carried = record.get("carried", {})
    if not carried:
        return ""
    rows = ", ".join(f"{name} (scored {date})" for name, date in sorted(carried.items()))
    return f" Rows kept from an earlier run with the same settings, not re-run: {rows}."


def sampled_markdown(record: dict) -> str:
    """Sampled pass@1 per variant, its change against float (and, for GGUF variants, against
    the F16 GGUF in the same runtime) with 95% intervals, the target and the verdict."""
    results, n, t = record["results"], record["n_samples"], record["temperature"]
    order = sorted(results, key=lambda name: (name != "float", name != SAME_RUNTIME, name))
    rows = [
        "| variant | backend | pass@1 | samples passed | vs float: points (95% interval) "
        f"| vs {SAME_RUNTIME}, same runtime: points (95% interval) | target | met |",
        "|---" * 8 + "|",
        *(sampled_row(results, name, n) for name in order),
    ]
    return "\n".join(
        [
            f"## HumanEval of quantized variants, sampled pass@1: {record['model']}",
            "",
            f"Table written {record['date']} on {record['machine']['cpu']}; "
            f"`{record['command']}`. Finished evals are reused.{carried_note(record)}",
            f"Full HumanEval (164), {n} samples per problem at temperature {t:g} (nucleus 0.95; "
            f"sample i of every problem has the same seed in every variant), "
            f"{record['prompting']} prompting, 512 new tokens at most, sandboxed{so_far(record)}; "
            "pass@1 is the mean share of passing samples. An interval is the 95% normal "
            "interval of the mean per-problem change in pass rate (paired over the 164 "
            f"problems). A GGUF variant is judged against {SAME_RUNTIME} (the float weights "
            "in the same runtime and sampler, so the change is the quantization's alone) where "
            "that was scored, else against float.",
            "",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    main()
