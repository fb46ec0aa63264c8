"""honed's llama.cpp backend against llama-cpp-python called directly, same file, one run.

Both sides load the same GGUF with the same threads and context, generate the same number of
tokens greedily from the same prompts (no stop strings, end-of-generation ignored by asking
for a fixed count), alternating so that drift on a shared machine hits both alike. Reported:
end-to-end tokens/s per query (prompt evaluation included) and honed / direct.

    .venv/bin/python benchmarks/llamacpp_overhead.py [--model qwen2.5-coder-0.5b-instruct]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from results_md import provenance, publish  # noqa: E402

from honed.bench.stats import summarize  # noqa: E402
from honed.runtime.base import GenerationParams, load_backend  # noqa: E402

PROMPTS = (
    "def quicksort(items):\n",
    "Write a haiku about compilers.\n",
    "class Matrix:\n    def __init__(self, rows):\n",
)


def direct(llm, prompt: str, tokens: int) -> tuple[float, int]:
    """llama-cpp-python's own completion API: seconds and tokens generated."""
    llm.reset()
    start = time.perf_counter()
    out = llm.create_completion(prompt, max_tokens=tokens, temperature=0.0, top_k=0, min_p=0.0)
    return time.perf_counter() - start, out["usage"]["completion_tokens"]


def honed(backend, prompt: str, tokens: int) -> tuple[float, int]:
    """The same through honed's Backend.generate."""
    backend.llm.reset()
    (c,) = backend.generate([prompt], GenerationParams(max_new_tokens=tokens, temperature=0.0))
    return c.total_s, c.completion_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    backend = load_backend(args.model, backend="llama.cpp", n_threads=args.threads, n_ctx=2048,
                           reuse_prefix=False)  # fmt: skip
    rates: dict[str, list[float]] = {"direct": [], "honed": []}
    honed(backend, PROMPTS[0], 8)  # warm-up
    for _ in range(args.rounds):
        for prompt in PROMPTS:
            for name, fn in (("direct", lambda p: direct(backend.llm, p, args.tokens)),
                             ("honed", lambda p: honed(backend, p, args.tokens))):  # fmt: skip
                seconds, n = fn(prompt)
                rates[name].append(n / seconds)
    stats = {k: summarize(v) for k, v in rates.items()}
    record = {
        "benchmark": "llamacpp_overhead", "model": args.model,
        **provenance(("llama-cpp-python",), threads=args.threads), "tokens": args.tokens,
        "tok_s": stats, "ratio": stats["honed"]["median"] / stats["direct"]["median"],
    }  # fmt: skip
    publish(record, "llamacpp_overhead.json", "## llama.cpp backend overhead", markdown(record))


def markdown(r: dict) -> str:
    d, h = r["tok_s"]["direct"], r["tok_s"]["honed"]
    return "\n".join([
        "## llama.cpp backend overhead: honed vs llama-cpp-python directly", "",
        f"Measured {r['date']} on {r['machine']['cpu']}, {r['machine']['threads']} threads; "
        f"`{r['command']}`. Model {r['model']}, {r['tokens']} greedy tokens per query, "
        f"{d['n']} queries each, alternating, the same loaded model.", "",
        "| caller | tokens/s median | p90 | std |", "|---|---|---|---|",
        f"| llama-cpp-python `create_completion` | {d['median']:.1f} | {d['p90']:.1f} "
        f"| {d['std']:.1f} |",
        f"| honed `Backend.generate` | {h['median']:.1f} | {h['p90']:.1f} | {h['std']:.1f} |",
        "", f"**honed / direct: {r['ratio']:.3f}** (end-to-end tokens/s, prompt included).", "",
    ])  # fmt: skip


if __name__ == "__main__":
    main()
