"""LoRA training speed in float32 against bf16 autocast, on this CPU, in one run.

`honed finetune --dtype bfloat16` computes in bf16 (autocast) on a CPU too. A CPU that
computes bf16 natively (AVX512-BF16 or AMX) is what that is for; on one that does not (AVX2
only) every bf16 matmul goes through conversions, and honed warns once that bf16 runs many
times slower there. This measures the ratio on the machine it runs on: same model, rows,
LoRA rank, batch and length for both, honed's own trainer (finetune_throughput's `honed`),
one epoch each, real (non-padding) tokens per second. Prints, saves
results/train_dtype_speed.json and rewrites its RESULTS.md section.

    .venv/bin/python benchmarks/train_dtype_speed.py [--rows 64] [--model smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from finetune_throughput import honed  # noqa: E402
from local_models import ensure_local  # noqa: E402
from results_md import provenance, publish  # noqa: E402

from honed.data import prepare_data  # noqa: E402
from honed.models.load import cpu_has_native_bf16, load_tokenizer, weights_dir  # noqa: E402
from honed.models.resolve import resolve  # noqa: E402

HEADING = "## Training dtype on the CPU: float32 against bf16"
EXPLANATION = """\
Where oneDNN reports no native bf16, `honed finetune` and `honed distill` (and every model
honed loads in bf16) warn once that bf16 runs many times slower than float32 there
(`honed.models.load.check_bf16_speed`); `--dtype auto`, the default, is float32 on a CPU."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--rows", type=int, default=64, help="MBPP train rows (one epoch)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-train-dtype"))
    args = parser.parse_args()
    ensure_local(args.model)
    model_dir = weights_dir(resolve(args.model))
    tok = load_tokenizer(model_dir)
    data = prepare_data("mbpp", tok, is_seq2seq=False, template="task", max_samples=args.rows)
    results = {dtype: honed(model_dir, tok, data.train, args.out, dtype)
               for dtype in ("float32", "bfloat16")}  # fmt: skip
    ratio = results["bfloat16"]["tokens_per_s"] / results["float32"]["tokens_per_s"]
    record = {
        "benchmark": "train_dtype_speed",
        **provenance(native_bf16=cpu_has_native_bf16(), threads=torch.get_num_threads()),
        "setup": {
            "model": args.model,
            "method": "lora r=16",
            "batch": 8,
            "max_length": 512,
            "rows": len(data.train),
            "data": "MBPP train",
        },  # fmt: skip
        "results": results,
        "bf16_over_fp32_tokens_per_s": round(ratio, 3),
    }
    publish(record, "train_dtype_speed.json", HEADING, markdown(record))


def markdown(record: dict) -> str:
    """The RESULTS.md section of one run."""
    m, s = record["machine"], record["setup"]
    native = "computes bf16 natively" if m["native_bf16"] else "has no native bf16"
    rows = [f"| {dtype} | {v['steps']} | {v['real_tokens']} | {v['seconds']} "
            f"| {v['tokens_per_s']} |" for dtype, v in record["results"].items()]  # fmt: skip
    return "\n".join([
        HEADING, "",
        f"Measured {record['date']} on {m['cpu']}, {m['cores']} cores ({native}: oneDNN's "
        f"check); `{record['command']}`. {s['model']}, LoRA r=16 all-linear, batch 8, "
        f"max_length 512, {s['rows']} MBPP-train rows, one epoch each, honed's trainer.", "",
        "| dtype | steps | real tokens | seconds | real tokens/s |", "|---|---|---|---|---|",
        *rows, "",
        f"**bf16 / float32: {record['bf16_over_fp32_tokens_per_s']}x** real tokens/s.", "",
        EXPLANATION, "",
    ])  # fmt: skip


if __name__ == "__main__":
    main()
