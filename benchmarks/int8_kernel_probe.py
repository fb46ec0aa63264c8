"""One-token matmul time of aten's `_weight_int8pack_mm` (fp32 and bf16 activations) against
fp32 and bf16 `linear`, at Qwen2.5-Coder-0.5B's MLP and output shapes, 2 threads.

Why honed's int8 CPU path (runtime/packed_cpu.py) rounds activations to bf16. Prints the table;
the figures quoted in RESULTS.md came from this code.

    .venv/bin/python benchmarks/int8_kernel_probe.py
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import torch

SHAPES = ((4864, 896), (896, 4864), (151936, 896))


def ms(call: Callable[[], object], n: int = 30) -> float:
    """Mean milliseconds per call, after one warm-up call."""
    call()
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n * 1e3


def main() -> None:
    torch.set_num_threads(2)
    print("| N x K | fp32 linear | int8pack, fp32 act | int8pack, bf16 act | bf16 linear |")
    print("|---|---|---|---|---|")
    for n, k in SHAPES:
        w, x = torch.randn(n, k), torch.randn(1, k)
        scale = w.abs().amax(1) / 127
        q = (w / scale[:, None]).round().to(torch.int8).contiguous()
        xb, sb, wb = x.bfloat16(), scale.bfloat16(), w.bfloat16()
        int8pack = torch.ops.aten._weight_int8pack_mm
        cells = [
            ms(partial(torch.nn.functional.linear, x, w)),
            ms(partial(int8pack, x, q, scale)),
            ms(partial(int8pack, xb, q, sb)),
            ms(partial(torch.nn.functional.linear, xb, wb)),
        ]
        print(f"| {n} x {k} | " + " | ".join(f"{c:.3f} ms" for c in cells) + " |")


if __name__ == "__main__":
    main()
