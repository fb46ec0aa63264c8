"""One-token matmul time of the CPU kernels honed's quantized linears run on, against fp32
and bf16 `linear`, at Qwen2.5-Coder-0.5B's MLP and output shapes, 2 threads.

Why honed's int8 and int4 CPU paths (runtime/packed_cpu.py) round activations to bf16 and
why NF4 computes in bf16. Columns: aten's `_weight_int8pack_mm` with fp32 and bf16
activations; aten's `_weight_int4pack_mm_for_cpu` (groups of 32) with bf16 activations;
torchao's own int4 weight-only linear (what `int4-weight` ran before honed packed it); a
bitsandbytes NF4 linear computing in fp32 and in bf16. Prints the table and saves it with
the machine and versions in benchmarks/results/cpu_kernel_probe.json and RESULTS.md's
section "CPU kernels at one token".

    .venv/bin/python benchmarks/cpu_kernel_probe.py
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from results_md import provenance, replace_section  # noqa: E402

TITLE = "## CPU kernels at one token"
SHAPES = ((4864, 896), (896, 4864), (151936, 896))
COLUMNS = ("fp32 linear", "int8pack, fp32 act", "int8pack, bf16 act", "int4pack, bf16 act",
           "torchao int4", "nf4, fp32 compute", "nf4, bf16 compute", "bf16 linear")  # fmt: skip


def ms(call: Callable[[], object], n: int = 20) -> float:
    """Mean milliseconds per call, after one warm-up call."""
    with torch.no_grad():
        call()
        start = time.perf_counter()
        for _ in range(n):
            call()
    return (time.perf_counter() - start) / n * 1e3


def int4_linears(w: torch.Tensor) -> tuple[torch.nn.Module, torch.nn.Module]:
    """torchao's int4 weight-only linear (asymmetric groups of 32) and honed's packed one."""
    from torchao.quantization import IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerGroup
    from torchao.quantization.quant_primitives import MappingType

    from honed.runtime.packed_cpu import Int4PackedLinear

    torchao = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    torchao.weight.data = w.clone()
    quantize_(torchao, IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(32),
                                            mapping_type=MappingType.ASYMMETRIC))  # fmt: skip
    q = torchao.weight
    packed = Int4PackedLinear(q.qdata, q.scale, q.zero_point, 32, None, torch.bfloat16)
    return torchao, packed


def nf4_linear(w: torch.Tensor, compute: torch.dtype) -> torch.nn.Module:
    """A bitsandbytes NF4 linear of w computing in `compute`."""
    import bitsandbytes as bnb

    nf4 = bnb.nn.Linear4bit(w.shape[1], w.shape[0], bias=False, compute_dtype=compute,
                            quant_type="nf4")  # fmt: skip
    nf4.weight = bnb.nn.Params4bit(w.clone(), requires_grad=False, quant_type="nf4")
    return nf4.to("cpu")


def row(n: int, k: int) -> list[float]:
    """Milliseconds per one-token call of every column at weight shape (n, k)."""
    w, x = torch.randn(n, k) * 0.02, torch.randn(1, k)
    scale = w.abs().amax(1) / 127
    q = (w / scale[:, None]).round().to(torch.int8).contiguous()
    xb, sb, wb = x.bfloat16(), scale.bfloat16(), w.bfloat16()
    int8pack, linear = torch.ops.aten._weight_int8pack_mm, torch.nn.functional.linear
    torchao, packed = int4_linears(w)
    return [
        ms(partial(linear, x, w)),
        ms(partial(int8pack, x, q, scale)),
        ms(partial(int8pack, xb, q, sb)),
        ms(partial(packed, x)),
        ms(partial(torchao, x), n=3),
        ms(partial(nf4_linear(w, torch.float32), x), n=5),
        ms(partial(nf4_linear(w, torch.bfloat16), x)),
        ms(partial(linear, xb, wb)),
    ]


def main() -> None:
    torch.set_num_threads(2)
    table = {f"{n} x {k}": row(n, k) for n, k in SHAPES}
    lines = ["| N x K | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    lines += [f"| {s} | " + " | ".join(f"{c:.3f}" for c in cells) + " |"
              for s, cells in table.items()]  # fmt: skip
    print("\n".join(lines))
    record = {
        "benchmark": "cpu_kernel_probe", "unit": "ms per one-token call", "columns": COLUMNS,
        **provenance(("torchao", "bitsandbytes"), threads=2), "table": table,
    }  # fmt: skip
    (HERE / "results" / "cpu_kernel_probe.json").write_text(json.dumps(record, indent=2))
    replace_section(TITLE, "\n".join([
        TITLE, "", f"Measured {record['date']} on {record['machine']['cpu']}, 2 threads; "
        f"`{record['command']}`.",
        "Milliseconds per call with one token of activations (N x K: the weight's shape; "
        "Qwen2.5-Coder-0.5B's MLP up/down and output matrices), mean of 20 calls after a "
        "warm-up (3 for torchao's int4 path, 5 for NF4 in fp32).", "", *lines, "",
    ]))  # fmt: skip


if __name__ == "__main__":
    main()
