"""Probe: torchao int8 weight-only decode speed with and without torch.compile, vs fp32 eager.

Not part of honed yet (honed runs torchao artifacts in eager mode); this measures whether
compiling is the path to the issue's 1.5x target. One process per mode, greedy, a fixed
number of new tokens; compilation time is reported separately.

    .venv/bin/python benchmarks/torchao_compile_probe.py fp32|int8|int8-compile [--model NAME]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torchao.quantization import Int8WeightOnlyConfig
from transformers import AutoModelForCausalLM, TorchAoConfig

from honed.bench.machine import cpu_name
from honed.quantize.source import prepare_source


def tok_s(model, ids: torch.Tensor, tokens: int) -> float:
    """Decode tokens/s of one greedy generation of exactly `tokens` new tokens."""
    start = time.perf_counter()
    model.generate(ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["fp32", "int8", "int8-compile"])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = prepare_source(args.model, Path("/tmp")).float_dir
    quant = (
        {}
        if args.mode == "fp32"
        else {"quantization_config": TorchAoConfig(Int8WeightOnlyConfig())}
    )
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **quant)
    if args.mode == "int8-compile":
        model.forward = torch.compile(model.forward, dynamic=True)
    ids = torch.tensor([[1, 504, 3458, 28, 6263, 30, 198]])
    start = time.perf_counter()
    model.generate(ids, max_new_tokens=8, do_sample=False)  # warm-up (and compilation)
    warm = time.perf_counter() - start
    print(f"{args.model} {args.mode} on {cpu_name()}, {args.threads} threads: "
          f"{tok_s(model, ids, args.tokens):.1f} tok/s (warm-up {warm:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
