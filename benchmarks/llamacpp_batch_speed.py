"""llama.cpp: prompts decoded one by one against the same prompts as one batch, in one run.

`LlamaCppBackend.generate` decodes several prompts together (`honed.runtime.llamacpp_batch`):
one `llama_decode` per step for every unfinished row, each row in its own KV stream, so the
weights are read once per step for the batch. This script loads one GGUF model, takes the
first N HumanEval problems as chat prompts (as `honed eval --prompting chat`), and runs each
group of prompts three ways on the same loaded model, alternating group by group so drift
on a shared machine hits all alike: prompt by prompt (`generate([p])`, the one-prompt path),
as batches of --batch-size, and refilled (the whole group in one call, so a waiting prompt
takes the place of each row that ends: what `honed eval` hands a llama.cpp backend,
BATCHES_PER_CALL batches at once). Greedy, or seeded sampling with --temperature; the
completions that are the very ones the one-prompt path gives are counted (each row attends
over its own KV stream and samples with its own seeded chain; only float rounding at
another matrix width can turn a near-tie). Reported: wall time, generated tokens, tokens
per second, the speed-ups, and the CPU time other processes took meanwhile.

    .venv/bin/python benchmarks/llamacpp_batch_speed.py --model qwen2.5-coder-1.5b-instruct
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from results_md import print_walls, provenance, replace_section  # noqa: E402
from row_decode_speed import chat_prompts  # noqa: E402

from honed.bench.machine import contention, cpu_ticks  # noqa: E402
from honed.evaluate.run import BATCHES_PER_CALL  # noqa: E402
from honed.runtime.base import GenerationParams, load_backend  # noqa: E402

HEADING = "## llama.cpp: a batch of prompts decoded together"
MODES = ("one by one", "batched", "refilled")


def calls(mode: str, group: list[str], size: int) -> list[list[str]]:
    """The generate calls one group of prompts takes in a mode."""
    if mode == "one by one":
        return [[prompt] for prompt in group]
    if mode == "batched":
        return [group[at : at + size] for at in range(0, len(group), size)]
    return [group]


def run(backend, prompts: list[str], params: GenerationParams, size: int) -> dict:
    """Per mode: wall seconds, completion tokens and texts, group by group in turn."""
    out = {mode: {"wall_s": 0.0, "tokens": 0, "texts": []} for mode in MODES}
    per_group = size * BATCHES_PER_CALL
    for at in range(0, len(prompts), per_group):
        group = prompts[at : at + per_group]
        for mode in MODES:
            start = time.perf_counter()
            done = [c for call in calls(mode, group, size) for c in backend.generate(call, params)]
            out[mode]["wall_s"] += time.perf_counter() - start
            out[mode]["tokens"] += sum(c.completion_tokens for c in done)
            out[mode]["texts"] += [c.text for c in done]
        print_walls(out, at + len(group), len(prompts))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--problems", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    # every prompt from scratch: a prefix reused from the call before changes float sums
    backend = load_backend(args.model, backend="llama.cpp", n_threads=args.threads,
                           reuse_prefix=False, batch_size=args.batch_size)  # fmt: skip
    prompts = chat_prompts(backend, args.problems)
    params = GenerationParams(max_new_tokens=args.max_new_tokens,
                              temperature=args.temperature, seed=7)  # fmt: skip
    before = cpu_ticks()
    out = run(backend, prompts, params, args.batch_size)
    record = {
        "benchmark": "llamacpp_batch_speed",
        "model": args.model,
        "problems": len(prompts),
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        **provenance(("llama_cpp",), threads=args.threads),
        **contention(before, cpu_ticks()),
        "wall_s": {mode: round(out[mode]["wall_s"], 2) for mode in MODES},
        "completion_tokens": {mode: out[mode]["tokens"] for mode in MODES},
        "same_completions": {mode: same(out, mode) for mode in MODES[1:]},
        "speedup": {mode: tok_s(out, mode) / tok_s(out, MODES[0]) for mode in MODES[1:]},
    }
    print(json.dumps(record, indent=2))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"llamacpp_batch_speed_{args.model}.json").write_text(json.dumps(record))
    replace_section(f"{HEADING}: {args.model}", markdown(record))


def same(out: dict, mode: str) -> int:
    """Completions of a mode identical to the one-prompt path's."""
    return sum(a == b for a, b in zip(out[MODES[0]]["texts"], out[mode]["texts"], strict=True))


def tok_s(out: dict, mode: str) -> float:
    return out[mode]["tokens"] / out[mode]["wall_s"]


def markdown(r: dict) -> str:
    """The RESULTS.md section: wall time, tokens and tokens/s per mode, and the ratio."""
    wall, tokens = r["wall_s"], r["completion_tokens"]
    rows = [f"| {m} | {wall[m]:.1f} | {tokens[m]} | {tokens[m] / wall[m]:.1f} |" for m in MODES]
    how = "greedy" if r["temperature"] == 0 else f"sampled at temperature {r['temperature']}"
    return "\n".join(
        [
            f"{HEADING}: {r['model']}",
            "",
            f"Measured {r['date']} on {r['machine']['cpu']}, {r['machine']['threads']} threads "
            f"(other processes took {100 * r.get('cpu_others', 0):.1f}% of the CPU time); "
            f"`{r['command']}`. The first {r['problems']} HumanEval problems as chat prompts "
            f"(llama.cpp), {r['batch_size']} rows at a time, {how}, {r['max_new_tokens']} new "
            f"tokens at most; each group of {r['batch_size'] * BATCHES_PER_CALL} prompts runs "
            f"prompt by prompt, as batches of {r['batch_size']}, and refilled (the whole group "
            "in one call: a waiting prompt takes the place of each row that ends), on the same "
            "loaded model.",
            "",
            "| decoding | wall time (s) | completion tokens | tokens/s |",
            "|---|---|---|---|",
            *rows,
            "",
            *[
                f"**{mode.capitalize()}: {r['speedup'][mode]:.2f}x** the tokens per second of "
                f"one by one (same run); {r['same_completions'][mode]} of {r['problems']} "
                "completions identical to the one-prompt path's."
                for mode in MODES[1:]
            ],
            "",
            "Each row attends over its own KV stream and samples with its own seeded chain; a "
            "matrix product at another width can round a near-tie the other way.",
            "",
        ]
    )


if __name__ == "__main__":
    main()
