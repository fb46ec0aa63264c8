"""SmolLM2 int8 against fp32 decode speed in one process: one prompt, 64 greedy tokens, six
timed runs each after a warm-up. A cross-check of quantize_speed.py's int8 figure, whose runs
spread widely; prints tok/s per run and the ratio of medians.

    .venv/bin/python benchmarks/int8_decode_probe.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from quantize_quality import variant_ref  # noqa: E402

from honed.runtime.base import GenerationParams, load_backend  # noqa: E402

MODEL = "smollm2-135m-instruct"


def rates(ref: str, runs: int = 6) -> list[float]:
    """Decode tok/s of each timed run (prompt included, as a user sees it)."""
    params = GenerationParams(max_new_tokens=64, temperature=0.0)
    backend = load_backend(ref)
    try:
        backend.generate(["def add(a, b):"], params)
        out = []
        for _ in range(runs):
            start = time.perf_counter()
            (done,) = backend.generate(["def fibonacci(n):"], params)
            out.append(done.completion_tokens / (time.perf_counter() - start))
        return out
    finally:
        backend.close()


def main() -> None:
    medians = {}
    for variant in ("float", "int8"):
        measured = rates(variant_ref(MODEL, variant))
        medians[variant] = statistics.median(measured)
        print(variant, " ".join(f"{r:.1f}" for r in measured), flush=True)
    print(f"int8 / fp32 (medians): {medians['int8'] / medians['float']:.2f}x")


if __name__ == "__main__":
    main()
