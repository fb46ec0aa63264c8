"""The bench stage: every model measured the same way, each in its own process, one table.

Prompts come from --prompts FILE, from a task (--task), or a fixed default set. The machine's
read bandwidth is measured before the first model and again after each one (the parent
process, no model in memory), and each model's roofline share uses the mean of the two
readings around it: on a shared VM the figure moves between runs minutes apart (RESULTS.md
records 32 and 54 GB/s on one day), so one reading up front could judge a model by a state
the machine was no longer in. A model that fails to load or crashes is a failed row; the
others still run.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from honed.artifacts import library_versions
from honed.bench import machine
from honed.bench.roofline import roofline
from honed.bench.table import markdown
from honed.config import BenchConfig, EvalConfig
from honed.errors import HonedError
from honed.progress import track

DEFAULT_PROMPTS = (
    'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
    "Write a Python function that checks whether a string is a palindrome.",
    "def merge_sorted(a: list[int], b: list[int]) -> list[int]:\n",
    "Explain in two sentences what a hash table is.",
    "Rewrite this question so it stands alone: where was she born?",
    "import csv\n\n\ndef read_rows(path):\n",
    "List three uses of a small language model on a laptop.",
    "class LRUCache:\n    def __init__(self, capacity: int):\n",
)


def load_prompts(cfg: BenchConfig) -> list[str]:
    """The first n_prompts prompts from the file, the task, or the default set."""
    if cfg.prompts is not None:
        prompts = _file_prompts(cfg.prompts)
    elif cfg.task:
        prompts = _task_prompts(cfg.task, cfg.n_prompts)
    else:
        prompts = list(DEFAULT_PROMPTS)
    if not prompts:
        raise HonedError("no prompts to run: the prompts file or task is empty")
    return prompts[: cfg.n_prompts]


def _file_prompts(path: Path) -> list[str]:
    if not path.is_file():
        raise HonedError(f"prompts file '{path}' not found: give a text file or a jsonl file")
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if path.suffix != ".jsonl":
        return lines
    try:
        return [str(json.loads(line)["prompt"]) for line in lines]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise HonedError(
            f"'{path}': every jsonl line needs a 'prompt' field ({type(exc).__name__})"
        ) from exc


def _task_prompts(task: str, n: int) -> list[str]:
    from honed.evaluate import tasks

    if task.startswith("text:"):
        from honed.evaluate.textmetrics import text_examples

        _, examples = text_examples(task.removeprefix("text:"), EvalConfig(task=task, limit=n))
        return [ex.prompt for ex in examples]
    code = tasks.get_task(task)
    return [tasks.base_prompt(code, p) for p in code.load()[:n]]


def measure_in_process(ref: str, cfg: BenchConfig, prompts: list[str], bandwidth: float) -> dict:
    """Run honed.bench.measure for one model in a fresh process; a failure becomes a row."""
    job = {"model": ref, "config": cfg.model_dump(mode="json"), "prompts": prompts,
           "bandwidth_gbs": bandwidth}  # fmt: skip
    cmd = [sys.executable, "-m", "honed.bench.measure"]
    before = machine.cpu_ticks()
    try:
        done = subprocess.run(cmd, input=json.dumps(job), capture_output=True, text=True,
                              timeout=cfg.timeout_s)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"model": ref, "error": f"took longer than {cfg.timeout_s:.0f} s (--timeout-s)"}
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        return {**json.loads(lines[-1]), **machine.contention(before, machine.cpu_ticks())}
    return {"model": ref, "error": _last_error(done.stderr)}


def bandwidth_reading(threads: int) -> dict[str, Any]:
    """One read-bandwidth measurement, with the CPU time taken away while it ran."""
    before = machine.cpu_ticks()
    reading = machine.memory_bandwidth(threads)
    return {**reading, **machine.contention(before, machine.cpu_ticks())}


def local_roofline(row: dict[str, Any], before_gbs: float, after_gbs: float) -> dict[str, Any]:
    """The row with its roofline against the mean of the readings taken around it."""
    roof = row.get("roofline")
    if "error" in row or not roof or not roof.get("bytes_per_token"):
        return row
    local = (before_gbs + after_gbs) / 2
    new = roofline(local, roof["bytes_per_token"], row["decode_tok_s"]["median"])
    return {**row, "roofline": {**new, "bandwidth_around": [before_gbs, after_gbs]}}


def _last_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    honed = [line for line in lines if line.startswith("honed:")]
    return (honed or lines or ["the process failed without a message"])[-1]


def bench(cfg: BenchConfig) -> dict[str, Any]:
    """Measure every model, write bench.json and bench.md, return the record."""
    if not cfg.models:
        raise HonedError("no models to measure: honed bench MODEL [MODEL ...]")
    out = cfg.output
    if (out / "bench.json").exists() and not cfg.overwrite:
        raise HonedError(f"'{out}' already holds a bench: pass --overwrite or choose --output")
    prompts = load_prompts(cfg)
    threads = cfg.threads or machine.usable_cores()
    readings, rows = [bandwidth_reading(threads)], []
    for ref in track(cfg.models, "benchmarking models"):
        row = measure_in_process(ref, cfg, prompts, readings[-1]["gbs"])
        readings.append(bandwidth_reading(threads))
        rows.append(local_roofline(row, readings[-2]["gbs"], readings[-1]["gbs"]))
    taken = {key: max(r.get(key, 0) for r in readings)
             for key in machine.CONTENTION if any(key in r for r in readings)}  # fmt: skip
    measured = {**readings[0], "readings": [r["gbs"] for r in readings], **taken}
    bandwidth = statistics.median(measured["readings"])
    record = {
        "bench": 1,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["honed", *sys.argv[1:]]) if sys.argv else "",
        "machine": {**machine.describe(threads), "bandwidth_gbs": bandwidth, "bandwidth": measured},
        "versions": library_versions(("onnxruntime", "llama-cpp-python", "torchao")),
        "config": cfg.model_dump(mode="json"),
        "prompts": prompts,
        "results": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "bench.json.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    tmp.rename(out / "bench.json")
    (out / "bench.md").write_text(markdown(record))
    return record
