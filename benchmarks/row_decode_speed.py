"""honed's row decoder against transformers' `generate` on the same batches, one run.

The transformers backend decodes a batch of causal-LM prompts with its own loop, where a row
leaves the batch (and the KV cache) at its end-of-sequence token; `generate` keeps every
finished row until the last one ends. Both run here on the same loaded model, the same
HumanEval chat prompts in the same batches, greedy (so both must produce the very same
tokens, which is checked), alternating batch by batch so drift on a shared machine hits both
alike. Reported: wall time, tokens, row-steps (rows decoded summed over steps: the work) and
the speed-up.

    .venv/bin/python benchmarks/row_decode_speed.py [--model smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from quantize_quality import variant_ref  # noqa: E402
from results_md import provenance, replace_section  # noqa: E402

from honed.evaluate import tasks  # noqa: E402
from honed.runtime.base import GenerationParams, load_backend  # noqa: E402

MODES = {"row decoder": True, "generate": False}


def chat_prompts(backend, n: int) -> list[str]:
    """The first n HumanEval problems as chat prompts, as `honed eval --prompting chat`."""
    task = tasks.get_task("humaneval")
    return [backend.chat_prompt(tasks.chat_messages(task, p)) for p in task.load()[:n]]


def timed(backend, batch: list[str], params: GenerationParams, row: bool) -> tuple[float, list]:
    """Seconds and completions of one batch through one decoder."""
    backend._row_decode = row
    start = time.perf_counter()
    out = backend.generate(batch, params)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--problems", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    args = parser.parse_args()
    backend = load_backend(variant_ref(args.model, "float"), backend="transformers",
                           dtype="float32", batch_size=args.batch_size)  # fmt: skip
    prompts = chat_prompts(backend, args.problems)
    params = GenerationParams(max_new_tokens=args.max_new_tokens)
    wall = dict.fromkeys(MODES, 0.0)
    texts: dict[str, list[str]] = {mode: [] for mode in MODES}
    tokens = dict.fromkeys(MODES, 0)
    for at in range(0, len(prompts), args.batch_size):
        for mode, row in MODES.items():
            seconds, out = timed(backend, prompts[at : at + args.batch_size], params, row)
            wall[mode] += seconds
            texts[mode] += [c.text for c in out]
            tokens[mode] += sum(c.completion_tokens for c in out)
        print(f"batch {at // args.batch_size + 1}: {wall}", file=sys.stderr, flush=True)
    record = {
        "benchmark": "row_decode_speed",
        "model": args.model,
        "problems": len(prompts),
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        **provenance(threads=backend_threads()),
        "wall_s": wall,
        "completion_tokens": tokens,
        "same_completions": sum(a == b for a, b in zip(*texts.values(), strict=True)),
        "speedup": wall["generate"] / wall["row decoder"],
    }
    print(json.dumps(record, indent=2))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"row_decode_speed_{args.model}.json").write_text(json.dumps(record))
    replace_section("## Batched decoding: a finished row leaves the batch", markdown(record))


def backend_threads() -> int:
    import torch

    return torch.get_num_threads()


def markdown(r: dict) -> str:
    """The RESULTS.md section: wall time and tokens per decoder, and the ratio."""
    wall, tokens = r["wall_s"], r["completion_tokens"]
    rows = [f"| {mode} | {wall[mode]:.1f} | {tokens[mode]} |" for mode in MODES]
    return "\n".join(
        [
            "## Batched decoding: a finished row leaves the batch",
            "",
            f"Measured {r['date']} on {r['machine']['cpu']}, {r['machine']['threads']} threads; "
            f"`{r['command']}`. Model {r['model']} (fp32, transformers), the first "
            f"{r['problems']} HumanEval problems as chat prompts, batches of {r['batch_size']}, "
            f"greedy, {r['max_new_tokens']} new tokens at most; the two decoders alternate "
            "batch by batch on the same loaded model.",
            "",
            "| decoder | wall time (s) | completion tokens |",
            "|---|---|---|",
            *rows,
            "",
            f"**Row decoder: {r['speedup']:.2f}x** the speed of `generate` (wall time, same "
            f"run); {r['same_completions']} of {r['problems']} completions are identical "
            "token for token (greedy: they should all be, up to float rounding in batches of "
            "another shape).",
            "",
        ]
    )


if __name__ == "__main__":
    main()
