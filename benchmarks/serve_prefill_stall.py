"""How long a reply being written stalls when a long prompt joins the batch: `honed serve`'s
batched model with chunked prefill (the prompt read 64, 128 (the default) or 256 tokens a
step) against the whole prompt in one step, on one machine in one run.

Request A (a short prompt, greedy, 160 new tokens) streams alone; after its 20th piece,
request B arrives with a long prompt (MBPP problems and their code, about --prompt-tokens
tokens) and 16 new tokens. Measured from A's stream: the longest gap between two of its
pieces while B is read, and A's median gap; from B: its time to first token. Each setting
runs --runs times on a fresh batched model (the gaps are the median over runs).

    .venv/bin/python benchmarks/serve_prefill_stall.py [--model qwen2.5-coder-0.5b-instruct]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from local_models import ensure_local  # noqa: E402
from results_md import provenance, publish  # noqa: E402

from honed.runtime import GenerationParams, Usage, load_backend  # noqa: E402
from honed.serve.batching import PREFILL_CHUNK, BatchedModel  # noqa: E402

HEADING = "## Serving: a long prompt joining the batch"


def long_prompt(backend, tokens: int) -> str:  # noqa: ANN001
    """MBPP train problems and their code until the prompt holds about `tokens` tokens."""
    from honed.data.builtin import load_mbpp
    from honed.data.sources import BadRows

    text = ""
    for row in load_mbpp(BadRows(True))["train"]:
        text += f"{row['text']}\n{row['code']}\n\n"
        if backend.count_tokens(text) >= tokens:
            break
    return text + "Write one more function of the same kind:\n"


def once(ref: str, chunk: int | None, prompt_b: str, threads: int | None) -> dict:
    backend = load_backend(ref, "llama.cpp", n_ctx=4096, n_threads=threads)
    model = BatchedModel(backend, 2, prefill_chunk=chunk)
    stamps: list[float] = []
    joined: list[float] = []
    usage_b = Usage()

    def b() -> None:
        joined.append(time.perf_counter())
        for _ in model.stream(prompt_b, GenerationParams(max_new_tokens=16), usage_b):
            pass

    try:
        helper = None
        for _ in model.stream("def fibonacci(n):", GenerationParams(max_new_tokens=160)):
            stamps.append(time.perf_counter())
            if len(stamps) == 20:
                helper = threading.Thread(target=b)
                helper.start()
        if helper is not None:
            helper.join()
    finally:
        model.close()
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    during = [g for g, t in zip(gaps, stamps[1:], strict=False) if t > joined[0]]
    return {
        "max_gap_s": max(during) if during else None,
        "median_gap_s": statistics.median(gaps),
        "b_ttft_s": usage_b.ttft_s,
        "b_prompt_tokens": usage_b.prompt_tokens,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--prompt-tokens", type=int, default=1500)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--chunks", type=int, nargs="+", default=[64, PREFILL_CHUNK, 256], help="prefill chunks"
    )
    args = parser.parse_args()
    ensure_local(args.model)
    from honed.models.resolve import resolve

    ref = resolve(args.model).path
    prompt_b = long_prompt(load_backend(ref, "llama.cpp", n_ctx=4096), args.prompt_tokens)
    settings: dict[str, int | None] = {f"{c} tokens a step": c for c in args.chunks}
    settings["whole prompt"] = None
    runs: dict[str, list[dict]] = {name: [] for name in settings}
    for _ in range(args.runs):  # alternating, so that drift hits both
        for name, chunk in settings.items():
            runs[name].append(once(ref, chunk, prompt_b, args.threads))
    results = {
        name: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
        for name, rs in runs.items()
    }
    record = {
        "benchmark": "serve_prefill_stall", "model": args.model,
        **provenance(("llama-cpp-python",)), "runs": args.runs, "results": results, "raw": runs,
    }  # fmt: skip
    publish(record, "serve_prefill_stall.json", HEADING, markdown(record))


def markdown(record: dict) -> str:
    m = record["machine"]
    rows = ["| prefill | A's longest gap while B is read (s) | A's median gap (s) | B's TTFT (s) |",
            "|---|---|---|---|"]  # fmt: skip
    for name, r in record["results"].items():
        rows.append(f"| {name} | {r['max_gap_s']:.3f} | {r['median_gap_s']:.3f} "
                    f"| {r['b_ttft_s']:.3f} |")  # fmt: skip
    tokens = next(iter(record["results"].values()))["b_prompt_tokens"]
    return "\n".join([
        HEADING, "",
        f"Measured {record['date']} on {m['cpu']}, {m['cores']} cores; `{record['command']}`; "
        f"{record['model']} (GGUF, llama.cpp), a batched model of 2 lanes. Request A streams "
        f"160 tokens; after its 20th piece request B arrives with a {tokens:.0f}-token prompt. "
        f"Medians over {record['runs']} runs of each setting, alternating.",
        "", *rows, "",
    ])  # fmt: skip


if __name__ == "__main__":
    main()
