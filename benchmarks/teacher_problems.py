"""Teacher-written training problems: more prompts than MBPP's 374 for distillation.

The teacher (chat, llama.cpp, sampled) is shown two MBPP train problems with their solutions
and tests, drawn at random (seeded) from those whose solution is at most 400 characters (a
shorter prompt to process), and asked for one new problem of the same kind with a solution
and three assert tests. A reply is kept when it parses (problem text, one solution defining
the function the asserts call, at least two asserts), its solution passes its own asserts in
honed's sandbox, its text is not close to any MBPP problem of any split (word-bigram Jaccard
at least --max-overlap; MBPP test's function names are refused outright, so that nothing of
the test split leaks into training) and not close to a problem already kept. Kept problems
are written in MBPP's own layout (task_id, text, code, test_list), so `distill_runs.py
--extra-problems FILE` trains on them next to MBPP's references.

Replies are appended to replies.jsonl as they come, so a stopped run continues where it
stopped; the filter runs on every reply at the end, and summary.json records the counts,
the generation time and tokens, the machine and the command.

    .venv/bin/python benchmarks/teacher_problems.py --prompts 320 \
        --out runs/distill-bench/logits/teacher-problems
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from local_models import ensure_local  # noqa: E402
from results_md import provenance  # noqa: E402

from honed.data.builtin import load_mbpp  # noqa: E402
from honed.data.sources import BadRows  # noqa: E402
from honed.evaluate.extract import defines, fenced_blocks  # noqa: E402
from honed.evaluate.sandbox import SandboxLimits, run_program  # noqa: E402
from honed.runtime.base import GenerationParams, load_backend  # noqa: E402

ASK = (
    "Here are two Python programming problems, each with a solution and the assert tests "
    "it must pass.\n\n{examples}\n\nWrite one new problem of the same kind, on a different "
    "topic from these two. Use exactly this layout: a line 'Problem: ' with the task in one "
    "or two sentences, the solution in one ```python block, then 'Tests:' and one ```python "
    "block of three assert lines that call the solution's function."
)
EXAMPLE = "Problem: {text}\n```python\n{code}\n```\nTests:\n```python\n{tests}\n```"


def mbpp_rows() -> list[dict]:
    """Every row of MBPP (all splits, honed's loader), each with its `split`."""
    splits = load_mbpp(BadRows(False))
    rows = [{**row, "split": split} for split, rows in splits.items() for row in rows]
    return sorted(rows, key=lambda row: int(row["task_id"]))  # the file's order


def ask(train: list[dict], rng: random.Random) -> str:
    """One request: two train problems drawn at random, shown with code and tests."""
    shown = [
        EXAMPLE.format(
            text=r["text"].strip(),
            code=r["code"].replace("\r\n", "\n").strip(),
            tests="\n".join(r["test_list"]),
        )
        for r in rng.sample(train, 2)
    ]
    return ASK.format(examples="\n\n".join(shown))


def parse(reply: str) -> dict | None:
    """Problem text, solution and asserts of a reply in the asked layout; None otherwise."""
    found = re.search(r"Problem:\s*(.+?)\s*(?:Solution:\s*)?```", reply, re.S)
    blocks = [block.code for block in fenced_blocks(reply)]
    if not found or not blocks:
        return None
    # the tests' own block, or (a reply that put them there) the solution's top-level asserts
    code, asserts = top_level_asserts(blocks[0])
    if len(blocks) > 1:
        asserts = top_level_asserts(blocks[1])[1]
    called = {name for line in asserts for name in re.findall(r"\b(\w+)\s*\(", line)}
    entry = next((name for name in sorted(called) if defines(code, name)), None)
    if len(asserts) < 2 or entry is None:
        return None
    return {"text": found.group(1).strip(), "code": code, "test_list": asserts[:5]}


def top_level_asserts(block: str) -> tuple[str, list[str]]:
    """A block without its unindented assert lines, and those lines."""
    lines = block.strip().splitlines()
    asserts = [line.strip() for line in lines if line.startswith("assert")]
    code = "\n".join(line for line in lines if not line.startswith("assert"))
    return code.strip(), asserts


def bigrams(text: str) -> set[tuple[str, str]]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return set(zip(words, words[1:], strict=False))


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def function_name(code: str) -> str | None:
    found = re.search(r"^def\s+(\w+)", code, re.M)
    return found.group(1) if found else None


def outcome(problem: dict) -> str:
    """'passed' when the solution and its asserts run to the end in the sandbox, else why
    not: the status and the exception's name ('failed: AssertionError', 'timeout: ...')."""
    program = problem["code"] + "\n\n" + "\n".join(problem["test_list"]) + "\n"
    result = run_program(program, SandboxLimits(timeout_s=10.0))
    if result.status == "passed":
        return "passed"
    return f"{result.status}: {result.message.split(':')[0][:40]}"


def generate(args: argparse.Namespace, replies: Path, train: list[dict]) -> None:
    """Ask the teacher for every request not answered yet (appended to replies)."""
    done = len(replies.read_text().splitlines()) if replies.is_file() else 0
    rng = random.Random(args.seed)
    requests = [ask(train, rng) for _ in range(args.prompts)]
    todo = list(range(done, args.prompts))
    if not todo:
        return

    backend = load_backend(args.teacher, backend="llama.cpp", batch_size=args.batch_size)
    params = GenerationParams(max_new_tokens=384, temperature=args.temperature, top_p=0.95)
    prompts = [backend.chat_prompt([{"role": "user", "content": r}]) for r in requests]
    with replies.open("a") as fh:
        for at in range(0, len(todo), args.chunk):
            ids = todo[at : at + args.chunk]
            start = time.perf_counter()
            seeded = replace(params, seed=args.seed + ids[0])
            out = backend.generate([prompts[i] for i in ids], seeded)
            share = (time.perf_counter() - start) / len(ids)  # the chunk's time, per reply
            for i, completion in zip(ids, out, strict=True):
                tokens = completion.completion_tokens
                row = {"request": i, "reply": completion.text, "tokens": tokens, "s": share}
                fh.write(json.dumps(row) + "\n")
            fh.flush()
            print(f"{ids[-1] + 1}/{args.prompts} replies", flush=True)
    backend.close()


def generation_stats(replies: Path) -> dict:
    """Generation time and tokens summed over the replies that recorded them (replies from
    before the script recorded them count apart)."""
    rows = [json.loads(line) for line in replies.read_text().splitlines()]
    timed = [r for r in rows if "s" in r]
    return {
        "generation_s": round(sum(r["s"] for r in timed), 1),
        "completion_tokens": sum(r["tokens"] for r in timed),
        "replies_untimed": len(rows) - len(timed),
    }


def keep(replies: Path, rows: list[dict], max_overlap: float) -> tuple[list[dict], dict]:
    """The replies that parse, pass their own tests and are new; counts of each cut."""
    lines = replies.read_text().splitlines()
    parsed = [p for line in lines if (p := parse(json.loads(line)["reply"]))]
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(outcome, parsed))
    passing = [p for p, why in zip(parsed, outcomes, strict=True) if why == "passed"]
    test_names = {function_name(r["code"]) for r in rows if r["split"] == "test"}
    known = [bigrams(r["text"]) for r in rows]
    counts = {"parsed": len(parsed), "passed": len(passing), "near_mbpp": 0, "test_name": 0}
    counts["duplicate"] = 0
    counts["not_passed"] = dict(Counter(why for why in outcomes if why != "passed").most_common())
    kept: list[dict] = []
    for problem in passing:
        words = bigrams(problem["text"])
        if function_name(problem["code"]) in test_names:
            counts["test_name"] += 1
        elif any(jaccard(words, k) >= max_overlap for k in known):
            counts["near_mbpp"] += 1
        elif any(jaccard(words, bigrams(k["text"])) >= max_overlap for k in kept):
            counts["duplicate"] += 1
        else:
            kept.append({"task_id": f"teacher-{len(kept) + 1}", **problem})
    counts["kept"] = len(kept)
    return kept, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--prompts", type=int, default=320, help="requests to the teacher")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=8, help="rows decoded together")
    parser.add_argument("--chunk", type=int, default=32, help="requests per generate call")
    parser.add_argument("--max-overlap", type=float, default=0.5, help="word-bigram Jaccard")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("runs/distill-bench/teacher-problems"))
    args = parser.parse_args()
    ensure_local(args.teacher)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = mbpp_rows()
    replies = args.out / "replies.jsonl"
    shown = [r for r in rows if r["split"] == "train" and len(r["code"]) <= 400]
    generate(args, replies, shown)
    kept, counts = keep(replies, rows, args.max_overlap)
    problems = args.out / "problems.jsonl"
    problems.write_text("".join(json.dumps(p) + "\n" for p in kept))
    summary = {
        "benchmark": "teacher_problems",
        **provenance(("llama-cpp-python",)),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "replies": len(replies.read_text().splitlines()),
        **counts,
        **generation_stats(replies),
        "problems": str(problems),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
