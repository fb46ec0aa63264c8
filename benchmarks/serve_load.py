"""honed serve against llama-cpp-python's own server on the same GGUF, at 1, 2 and 4 clients.

One run, one machine. Each server runs alone in its own process with the same threads and
context; llama_cpp.server is started with --interrupt_requests False so that concurrent
requests queue instead of cutting each other off (its default). honed serves twice: as
started plainly (one generation at a time, the others queued) and with --max-concurrency
set to the most clients (continuous batching: the running requests decode together).
Every client sends streaming /v1/completions requests (greedy, no repeat penalty, the same
fixed prompts, max_tokens each) one after another. Measured per concurrency level:
aggregate completion tokens/s (all tokens / wall time of the level; tokens counted by
tokenizing the streamed text with the model's own vocabulary, so both servers are counted
the same way) and time to first token (first non-empty text) p50 / p95.

    .venv/bin/python benchmarks/serve_load.py [--model qwen2.5-coder-0.5b-instruct]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from results_md import provenance, publish, replace_section  # noqa: E402

from honed.bench.machine import usable_cores  # noqa: E402
from honed.bench.stats import summarize  # noqa: E402
from honed.models.resolve import resolve  # noqa: E402

BATCHED, OTHER = "honed batched", "llama_cpp.server"
LOGS = Path("runs")  # the servers' own output goes to runs/serve_load_<server>.log
PROMPTS = (
    "def quicksort(items):\n",
    "Write a Python function that checks whether a string is a palindrome.\n",
    "class Matrix:\n    def __init__(self, rows):\n",
    "def parse_csv_line(line: str) -> list[str]:\n",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(server: str, gguf: str, port: int, args: argparse.Namespace) -> subprocess.Popen:
    """Start one server and wait until it answers /v1/models."""
    bin_dir = Path(sys.executable).parent
    threads, n_ctx = args.threads, args.n_ctx
    if server.startswith("honed"):
        cmd = [str(bin_dir / "honed"), "serve", gguf, "--port", str(port), "--served-name", "m",
               "--threads", str(threads), "--n-ctx", str(n_ctx), "--max-queue", "64"]  # fmt: skip
        if server == BATCHED:
            cmd += ["--max-concurrency", str(max(args.clients))]
    else:
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--port", str(port),
               "--model_alias", "m", "--n_threads", str(threads), "--n_threads_batch",
               str(threads), "--n_ctx", str(n_ctx), "--interrupt_requests", "False"]  # fmt: skip
    return launch(cmd, server, port)


def launch(cmd: list[str], server: str, port: int) -> subprocess.Popen:
    """Run a server command (output to runs/serve_load_<server>.log) until it answers."""
    log = open(LOGS / f"serve_load_{server.replace(' ', '_')}.log", "w")  # noqa: SIM115 (open while it runs)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"{server} server failed: see {log.name}")
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"{server} server did not start in 300 s")


def one_request(url: str, prompt: str, max_tokens: int) -> tuple[float, float, str]:
    """Stream one completion: (time to first text, total seconds, text)."""
    body = {"model": "m", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0,
            "stream": True, "repeat_penalty": 1.0, "top_k": 0, "min_p": 0.0}  # fmt: skip
    start, first, text = time.perf_counter(), None, []
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=600) as answer:
        answer.raise_for_status()
        for line in answer.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            piece = "".join(c.get("text") or "" for c in chunk.get("choices", []))
            if piece and first is None:
                first = time.perf_counter() - start
            text.append(piece)
    total = time.perf_counter() - start
    return (first if first is not None else total), total, "".join(text)


def level(url: str, clients: int, requests: int, max_tokens: int, count) -> dict:
    """`requests` requests spread over `clients` concurrent clients: raw measurements."""
    jobs = list(range(requests))
    lock, done = threading.Lock(), []

    def client() -> None:
        while True:
            with lock:
                if not jobs:
                    return
                n = jobs.pop()
            done.append(one_request(url, PROMPTS[n % len(PROMPTS)], max_tokens))

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "tokens": sum(count(text) for _, _, text in done),
        "ttft": [d[0] for d in done],
        "latency": [d[1] for d in done],
    }


def measure(starter, args: argparse.Namespace, count) -> list[dict]:  # noqa: ANN001
    """Start a server (`starter(port)`), measure every concurrency level, stop it."""
    port = free_port()
    proc = starter(port)
    url = f"http://127.0.0.1:{port}"
    try:
        one_request(url, PROMPTS[0], 8)  # warm-up
        return [level(url, c, args.requests, args.max_tokens, count) for c in args.clients]
    finally:
        proc.terminate()
        proc.wait(30)


def combine(clients: list[int], rounds: list[list[dict]]) -> list[dict]:
    """Per level: tokens and wall time summed over the rounds, percentiles over all requests."""
    out = []
    for n, c in enumerate(clients):
        runs = [r[n] for r in rounds]
        tokens, wall = sum(r["tokens"] for r in runs), sum(r["wall_s"] for r in runs)
        out.append(
            {
                "clients": c,
                "requests": sum(len(r["ttft"]) for r in runs),
                "tokens": tokens,
                "wall_s": wall,
                "aggregate_tok_s": tokens / wall,
                "per_round_tok_s": [r["tokens"] / r["wall_s"] for r in runs],
                "ttft_s": summarize([t for r in runs for t in r["ttft"]]),
                "latency_s": summarize([t for r in runs for t in r["latency"]]),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--requests", type=int, default=12, help="requests per level and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, alternating who goes first")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=usable_cores())
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--rewrite", type=Path, help="only rebuild RESULTS.md from a saved JSON")
    args = parser.parse_args()
    if args.rewrite:
        return replace_section(
            "## Serving under load", markdown(json.loads(args.rewrite.read_text()))
        )
    import llama_cpp

    gguf = resolve(args.model).path
    vocab = llama_cpp.Llama(model_path=gguf, vocab_only=True, verbose=False)

    def count(text: str) -> int:
        return len(vocab.tokenize(text.encode(), add_bos=False, special=False)) if text else 0

    servers = ("honed", BATCHED, OTHER)
    raw: dict[str, list] = {s: [] for s in servers}
    for n in range(args.rounds):  # ABBA: each server goes first as often as it goes last
        for server in servers if n % 2 == 0 else servers[::-1]:
            raw[server].append(measure(partial(start, server, gguf, args=args), args, count))
    results = {s: combine(args.clients, raw[s]) for s in servers}
    record = {
        "benchmark": "serve_load", "model": args.model, "file": Path(gguf).name,
        **provenance(("llama-cpp-python", "fastapi", "uvicorn"), threads=args.threads),
        "max_tokens": args.max_tokens, "requests_per_level": args.requests, "rounds": args.rounds,
        "results": results,
    }  # fmt: skip
    publish(record, "serve_load.json", "## Serving under load", markdown(record))


def markdown(record: dict) -> str:
    """The RESULTS.md section: every server per concurrency level, and each honed / llama_cpp."""
    results = record["results"]
    names = {"honed": "honed serve", BATCHED: "honed serve --max-concurrency N (batched)"}
    servers = [s for s in ("honed", BATCHED) if s in results] + [OTHER]
    rows = ["| clients | server | aggregate tok/s | TTFT p50 (s) | TTFT p95 (s) | latency p50 (s) "
            "| x llama_cpp.server tok/s |", "|---" * 7 + "|"]  # fmt: skip
    for n, base in enumerate(results[OTHER]):
        for server in servers:
            r = results[server][n]
            x = r["aggregate_tok_s"] / base["aggregate_tok_s"]
            rows.append(
                f"| {r['clients']} | {names.get(server, server)} | {r['aggregate_tok_s']:.1f} "
                f"| {r['ttft_s']['median']:.3f} | {r['ttft_s']['p95']:.3f} "
                f"| {r['latency_s']['median']:.3f} | {'' if server == OTHER else f'{x:.2f}'} |"
            )
    m = record["machine"]
    return "\n".join([
        "## Serving under load", "",
        f"Measured {record['date']} on {m['cpu']} ({m['cores']} cores, {m['threads']} threads "
        f"for each server); `{record['command']}`; {record['file']}.",
        f"Streaming /v1/completions, greedy, {record['max_tokens']} tokens at most, "
        f"{record['requests_per_level']} requests per level spread over the clients, "
        f"{record.get('rounds', 1)} rounds with the servers alternating who goes first "
        "(tokens and wall time summed over rounds, percentiles over all requests); "
        "llama_cpp.server with --interrupt_requests False (its default cuts a running "
        "stream off when the next request comes). Servers run one at a time.",
        "", *rows, "",
    ])  # fmt: skip


if __name__ == "__main__":
    main()
