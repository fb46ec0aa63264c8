"""Decode speed and per-query latency of each quantized variant against PyTorch fp32 eager.

One run, one machine, the same prompts for every variant; each variant is measured in its own
process (so one runtime's threads or memory cannot slow another). Variants are made with
`honed quantize` (kept under runs/bench-quant/ and reused), so their export checks (greedy
agreement, KL, size) come along into the table.

- causal model (default SmolLM2-135M-Instruct, or --model): fp32, int8, int8-dynamic,
  int4-weight, nf4, onnx, onnx-int8, gguf-q8_0, gguf-q4_k_m; greedy, --max-new-tokens per
  prompt, no stop strings;
- --t5: a Flan-T5-base-shaped text-to-text model (the real config, random weights; speed does
  not depend on the weights) in fp32 and ONNX int8, per-query latency of query rewriting.

    .venv/bin/python benchmarks/quantize_speed.py [--model qwen2.5-coder-0.5b-instruct]
    .venv/bin/python benchmarks/quantize_speed.py --t5

`--variants A B` measures fp32 and those variants only, and keeps the other rows of the saved
JSON; every row's ratios are to the fp32 measured in the same run as that row.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from results_md import provenance, replace_section  # noqa: E402

from honed.bench.measure import speeds  # noqa: E402
from honed.quantize.checks import size_on_disk  # noqa: E402

CAUSAL_METHODS = (
    "int8",
    "int8-dynamic",
    "int4-weight",
    "nf4",
    "onnx",
    "onnx-int8",
    "gguf-q8_0",
    "gguf-q4_k_m",
)
T5_METHODS = ("onnx", "onnx-int8")
PROMPTS = (
    'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
    "Write a Python function that checks whether a string is a palindrome.",
    "def merge_sorted(a: list[int], b: list[int]) -> list[int]:\n",
    "Explain in two sentences what a hash table is.",
)
QUERIES = (
    "what did he do after that",
    "where was she born and when did she move to the city",
    "how many albums did the band release before the split",
    "did they win the championship that year",
)
WORK = Path("runs/bench-quant")
REFERENCE = "fp32 (PyTorch eager)"


def measure(ref: str, backend: str, prompts: tuple[str, ...], args: argparse.Namespace) -> dict:
    """Warm up once, then time every prompt `runs` times (in this process).

    The fp32 reference loads with dtype float32; a variant loads as a user gets it (dtype
    auto: on a CPU with native bf16, int8 linears run aten's fused kernel).
    """
    from honed.runtime.base import GenerationParams, load_backend

    options = {"dtype": args.dtype, "batch_size": 1} if backend == "transformers" else {}
    max_new, runs = args.max_new_tokens, args.runs
    start = time.perf_counter()
    model = load_backend(ref, backend=backend, **options)
    load_s = time.perf_counter() - start
    params = GenerationParams(max_new_tokens=max_new, temperature=0.0)
    model.generate([prompts[0]], params)  # warm-up
    done = [model.generate([p], params)[0] for _ in range(runs) for p in prompts]
    model.close()
    return {"load_s": load_s, **speeds(done)}


def in_subprocess(ref: str, backend: str, dtype: str, args: argparse.Namespace) -> dict:
    """Run `measure` for one variant in a fresh Python process."""
    cmd = [sys.executable, __file__, "--measure", ref, "--backend", backend, "--dtype", dtype,
           "--max-new-tokens", str(args.max_new_tokens), "--runs", str(args.runs)]  # fmt: skip
    if args.t5:
        cmd.append("--t5")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_variant(source: str, method: str, name: str) -> tuple[Path, dict]:
    """The artifact for one method, made once with honed quantize and reused."""
    from honed.artifacts import is_artifact, read_manifest
    from honed.config import QuantizeConfig
    from honed.quantize.stage import quantize

    out = WORK / f"{name}-{method}"
    if not is_artifact(out):
        quantize(QuantizeConfig(model=source, method=method, output=out, overwrite=True))
    return out, read_manifest(out)


def flan_t5_base_shaped(path: Path) -> Path:
    """Flan-T5-base's architecture with random weights and a tokenizer trained on the spot."""
    if (path / "config.json").is_file():
        return path
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    from honed.data.builtin import find_data_file

    lines = find_data_file("quotes.jsonl").read_text().splitlines()
    quotes = [json.loads(line)["quote"] for line in lines[:2000]]
    tok.train_from_iterator(quotes + list(QUERIES), trainers.BpeTrainer(
        vocab_size=8000, special_tokens=["<pad>", "</s>", "<unk>"]))  # fmt: skip
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>")  # fmt: skip
    config = T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=2048, num_layers=12,
                      num_decoder_layers=12, num_heads=12, feed_forward_proj="gated-gelu",
                      tie_word_embeddings=False, pad_token_id=0, eos_token_id=1,
                      decoder_start_token_id=0)  # fmt: skip
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(path)
    fast.save_pretrained(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--t5", action="store_true", help="the Flan-T5-base-shaped model")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3, help="passes over the prompts")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--rewrite", type=Path, help="only rebuild RESULTS.md from a saved JSON")
    parser.add_argument("--variants", nargs="+", help="measure fp32 and these only; keep the rest")
    args = parser.parse_args()
    if args.rewrite:
        record = json.loads(args.rewrite.read_text())
        return replace_section(f"## Quantized variants: {record['title']}", markdown(record))
    prompts = QUERIES if args.t5 else PROMPTS
    if args.measure:
        print(json.dumps(measure(args.measure, args.backend, prompts, args)))
        return
    record = run_all(args)
    (HERE / "results").mkdir(exist_ok=True)
    saved = HERE / "results" / f"quantize_speed_{record['name']}.json"
    if args.variants and saved.is_file():
        carry_rows(record, json.loads(saved.read_text()))
    print(json.dumps(record, indent=2))
    saved.write_text(json.dumps(record, indent=2))
    replace_section(f"## Quantized variants: {record['title']}", markdown(record))


def run_all(args: argparse.Namespace) -> dict:
    """Make every variant, then measure fp32 and each variant in its own process."""
    from honed.quantize.source import prepare_source

    if args.t5:
        source = str(flan_t5_base_shaped(WORK / "flan-t5-base-shaped"))
        name, methods = "t5", T5_METHODS
    else:
        source, name, methods = args.model, args.model, CAUSAL_METHODS
    if args.variants:
        unknown = sorted(set(args.variants) - set(methods))
        if unknown:
            raise SystemExit(f"unknown variant {unknown[0]}: use one of {', '.join(methods)}")
        methods = tuple(m for m in methods if m in args.variants)
    float_dir = prepare_source(source, WORK).float_dir
    variants = {REFERENCE: (str(float_dir), "transformers", {})}
    for method in methods:
        path, manifest = make_variant(source, method, name)
        variants[method] = (str(path), manifest["backend"], manifest.get("checks", {}))
    results = {}
    for label, (ref, backend, checks) in variants.items():
        print(f"measuring {label}", file=sys.stderr)
        dtype = "float32" if label == REFERENCE else "auto"
        results[label] = {"backend": backend, "dtype": dtype,
                          **in_subprocess(ref, backend, dtype, args),
                          "path": ref, "size_mb": size_on_disk(Path(ref)) / 1e6,
                          "checks": _check_summary(checks)}  # fmt: skip
    title = "Flan-T5-base-shaped (random weights)" if args.t5 else args.model
    return {
        "benchmark": "quantize_speed", "name": name, "title": title,
        **provenance(("torchao", "onnxruntime")),
        "max_new_tokens": args.max_new_tokens, "runs": args.runs, "results": results,
    }  # fmt: skip


def carry_rows(record: dict, earlier: dict) -> None:
    """Keep the earlier record's rows this run did not measure, each with that run's fp32
    reference and date, in the order of the method list."""
    reference = {k: earlier["results"][REFERENCE][k] for k in ("decode_tok_s", "latency_s")}
    for label, row in earlier["results"].items():
        if label not in record["results"]:
            row.setdefault("reference", {**reference, "date": earlier["date"]})
            record["results"][label] = row
    order = [REFERENCE, *CAUSAL_METHODS, *T5_METHODS]
    record["results"] = dict(
        sorted(
            record["results"].items(),
            key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order),
        )  # fmt: skip
    )


def _check_summary(checks: dict) -> dict:
    if not checks:
        return {}
    return {
        "exact_match": checks["agreement"]["exact_match"],
        "agreement": checks["agreement"].get("agreement"),
        "mean_kl": checks["kl"]["mean_kl"],
        "size_mb": checks["size_bytes"]["export"] / 1e6,
        "warnings": checks["warnings"],
    }


def greedy_cell(checks: dict) -> str:
    """Greedy exact-match rate, and the agreement that counts near-tie flips as agreeing
    (records made before that count show the exact rate alone)."""
    exact = f"{checks.get('exact_match', 1.0):.0%}"
    near = checks.get("agreement")
    return exact if near is None else f"{exact} / {near:.0%}"


def markdown(record: dict) -> str:
    """The RESULTS.md section: one row per variant, speeds as ratios to fp32 in this run."""
    rows = ["| variant | backend | decode tok/s (median) | x fp32 | latency median (s) | "
            "latency p99 (s) | x fp32 (median latency) | new tokens (mean) | size (MB) "
            "| greedy exact / near-ties apart | KL |", "|---" * 11 + "|"]  # fmt: skip
    for label, r in record["results"].items():
        if "error" in r:
            rows.append(f"| {label} | {r['backend']} | failed: {r['error']} ||||||||")
            continue
        tok, lat = r["decode_tok_s"]["median"], r["latency_s"]
        base, c = r.get("reference", record["results"][REFERENCE]), r["checks"]
        rows.append(
            f"| {label} | {r['backend']} | {tok:.1f} | {tok / base['decode_tok_s']['median']:.2f} "
            f"| {lat['median']:.3f} | {lat['p99']:.3f} "
            f"| {base['latency_s']['median'] / lat['median']:.2f} | {r['mean_new_tokens']:.1f} "
            f"| {r['size_mb']:.0f} "
            f"| {greedy_cell(c)} | {c.get('mean_kl', 0.0):.4f} |"
        )
    return "\n".join([
        f"## Quantized variants: {record['title']}", "",
        f"Measured {record['date']} on {record['machine']['cpu']}; `{record['command']}`."
        f"{kept_note(record)}",
        f"Greedy, {record['max_new_tokens']} new tokens at most, no stop strings, "
        f"{record['runs']} passes over the fixed prompts after one warm-up; each variant in its "
        "own process, the fp32 row with dtype float32 and every variant with dtype auto (what "
        "a user gets: on a CPU with native bf16, int8 and int4 linears run aten's fused "
        "kernels with bf16 activations, NF4 linears compute in bf16). Agreement and KL come "
        "from `honed quantize`'s checks against the float model (fp32 rows: the reference "
        "itself). Latency ratios also reflect how many tokens each variant generated before "
        "its end-of-sequence token; decode tok/s does not.",
        "", *rows, "",
    ])  # fmt: skip


def kept_note(record: dict) -> str:
    """' Rows kept from an earlier run ...' when some rows were carried over."""
    kept = {k: r["reference"]["date"] for k, r in record["results"].items() if "reference" in r}
    if not kept:
        return ""
    rows = ", ".join(f"{k} ({date})" for k, date in kept.items())
    return (f" Rows kept from an earlier run, not re-measured, each with its ratios to the fp32 "
            f"row of its own run: {rows}.")  # fmt: skip


if __name__ == "__main__":
    main()
