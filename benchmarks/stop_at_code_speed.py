"""Chat evals with and without `--stop-at-code`, on the same prompts in one run.

With chat prompting `honed eval` ends a reply once it holds a closed ```python block that
defines the function under test (`answer_complete`): the code scored cannot change after
that, so the prose a chat model writes after its code is not generated. This script runs the
first N HumanEval problems as chat prompts through one loaded model (llama.cpp for the
built-in GGUF models), greedy, each prompt twice in turn (whole reply, then ended at its
code; alternating so drift on a shared machine hits both alike), and reports wall time,
generated tokens, the speed-up, and how many of the programs that would be scored are
identical (all of them must be).

    .venv/bin/python benchmarks/stop_at_code_speed.py --model qwen2.5-coder-0.5b-instruct
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

from honed.evaluate import tasks  # noqa: E402
from honed.evaluate.run import code_done  # noqa: E402
from honed.runtime.base import GenerationParams, load_backend  # noqa: E402

HEADING = "## Chat evals: a reply ends when its code is complete"
MODES = ("whole reply", "stop at code")


def run(backend, problems: list, max_new: int) -> dict:
    """Per mode: wall seconds, completion tokens, and the programs that would be scored."""
    task = tasks.get_task("humaneval")
    prompts = [backend.chat_prompt(tasks.chat_messages(task, p)) for p in problems]
    finished = code_done(prompts, problems)
    params = {
        MODES[0]: GenerationParams(max_new_tokens=max_new),
        MODES[1]: GenerationParams(max_new_tokens=max_new, finished=finished),
    }
    out = {mode: {"wall_s": 0.0, "tokens": 0, "programs": [], "texts": []} for mode in MODES}
    for n, (prompt, problem) in enumerate(zip(prompts, problems, strict=True)):
        for mode in MODES:
            start = time.perf_counter()
            completion = backend.generate([prompt], params[mode])[0]
            out[mode]["wall_s"] += time.perf_counter() - start
            out[mode]["tokens"] += completion.completion_tokens
            program = tasks.program_for(task, problem, completion.text, "chat")
            out[mode]["programs"].append(program)
            out[mode]["texts"].append(completion.text)
        print_walls(out, n + 1, len(prompts))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    # every prompt evaluated from scratch: a KV cache reused from the call before changes the
    # float sums a little, and a greedy reply can then take another turn
    backend = load_backend(args.model, n_threads=args.threads, reuse_prefix=False)
    problems = tasks.get_task("humaneval").load()[: args.problems]
    out = run(backend, problems, args.max_new_tokens)
    whole, early = (out[mode] for mode in MODES)
    record = {
        "benchmark": "stop_at_code_speed",
        "model": args.model,
        "backend": backend.name,
        "problems": len(problems),
        "max_new_tokens": args.max_new_tokens,
        **provenance(("llama_cpp",), threads=args.threads),
        "wall_s": {mode: round(out[mode]["wall_s"], 2) for mode in MODES},
        "completion_tokens": {mode: out[mode]["tokens"] for mode in MODES},
        "same_programs": sum(
            a == b for a, b in zip(whole["programs"], early["programs"], strict=True)
        ),
        "early_is_prefix": sum(
            a.startswith(b) for a, b in zip(whole["texts"], early["texts"], strict=True)
        ),
        "speedup": whole["wall_s"] / early["wall_s"],
    }
    print(json.dumps(record, indent=2))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"stop_at_code_speed_{args.model}.json").write_text(json.dumps(record))
    replace_section(f"{HEADING}: {args.model}", markdown(record))


def markdown(r: dict) -> str:
    """The RESULTS.md section: wall time and tokens per mode, the ratio, identical programs."""
    wall, tokens = r["wall_s"], r["completion_tokens"]
    rows = [f"| {mode} | {wall[mode]:.1f} | {tokens[mode]} |" for mode in MODES]
    return "\n".join(
        [
            f"{HEADING}: {r['model']}",
            "",
            f"Measured {r['date']} on {r['machine']['cpu']}, {r['machine']['threads']} threads; "
            f"`{r['command']}`. The first {r['problems']} HumanEval problems as chat prompts "
            f"({r['backend']}), greedy, {r['max_new_tokens']} new tokens at most; each prompt "
            "runs both ways in turn on the same loaded model.",
            "",
            "| reply | wall time (s) | completion tokens |",
            "|---|---|---|",
            *rows,
            "",
            f"**Stopping at the code: {r['speedup']:.2f}x** the speed of whole replies (wall "
            f"time, same run); {r['same_programs']} of {r['problems']} programs scored are "
            "identical (they must all be: the block scored cannot change after it closes); "
            f"{r['early_is_prefix']} ended replies are the start of the whole reply.",
            "",
        ]
    )


if __name__ == "__main__":
    main()
