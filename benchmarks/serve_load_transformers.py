"""honed serve on a transformers model, three ways, at 1 and 4 clients: one request at a
time, one model copy per request (--no-batching), and continuous batching (one model, the
running requests decoding together).

One run, one machine; the servers run one at a time, in alternating order over the rounds.
The model is the GGUF dequantized to float32 by transformers (honed's cache), served on the
CPU with every core. Clients and measurements are serve_load.py's: streaming
/v1/completions, greedy, fixed prompts; aggregate completion tokens/s and time to first
token p50 / p95 per concurrency level; peak RSS of each server process.

    .venv/bin/python benchmarks/serve_load_transformers.py [--model smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse
import sys
import threading
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from results_md import provenance, publish  # noqa: E402
from serve_load import combine, launch, measure  # noqa: E402

from honed.bench.machine import usable_cores  # noqa: E402

SERVERS = {
    "one at a time": [],
    "a copy per request": ["--no-batching"],
    "batched": [],
}
HEADING = "## Serving under load: transformers"


def start(server: str, args: argparse.Namespace, port: int, *, peaks: dict):  # noqa: ANN201
    """Start honed serve on the transformers backend; watch its peak RSS."""
    honed = str(Path(sys.executable).parent / "honed")
    cmd = [honed, "serve", args.model, "--backend", "transformers", "--port", str(port),
           "--served-name", "m", "--threads", str(args.threads), "--max-queue", "64",
           *SERVERS[server]]  # fmt: skip
    if server != "one at a time":
        cmd += ["--max-concurrency", str(max(args.clients))]
    proc = launch(cmd, server, port)
    threading.Thread(target=watch_rss, args=(proc, peaks, server), daemon=True).start()
    return proc


def watch_rss(proc, peaks: dict, server: str) -> None:  # noqa: ANN001
    """Record the process's peak resident memory (VmHWM) until it exits."""
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            line = next(x for x in status.read_text().splitlines() if x.startswith("VmHWM"))
        except (OSError, StopIteration):
            return
        peaks[server] = max(peaks.get(server, 0), int(line.split()[1]) * 1024)
        threading.Event().wait(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--requests", type=int, default=8, help="requests per level and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, alternating who goes first")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=usable_cores())
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from honed.models.resolve import resolve

    source = resolve(args.model)
    where, options = tokenizer_location(source)
    tok = AutoTokenizer.from_pretrained(*where, **options)

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"]) if text else 0

    raw: dict[str, list] = {s: [] for s in SERVERS}
    peaks: dict[str, int] = {}
    for n in range(args.rounds):
        for server in list(SERVERS) if n % 2 == 0 else list(SERVERS)[::-1]:
            starter = partial(start, server, args, peaks=peaks)
            raw[server].append(measure(starter, args, count))
    record = {
        "benchmark": "serve_load_transformers", "model": args.model,
        **provenance(("transformers", "fastapi", "uvicorn"), threads=args.threads),
        "max_tokens": args.max_tokens, "requests_per_level": args.requests, "rounds": args.rounds,
        "results": {s: combine(args.clients, raw[s]) for s in SERVERS}, "peak_rss_bytes": peaks,
    }  # fmt: skip
    publish(record, "serve_load_transformers.json", HEADING, markdown(record))


def tokenizer_location(source) -> tuple:  # noqa: ANN001
    """from_pretrained arguments for the source's tokenizer (a GGUF's own vocabulary)."""
    if source.kind == "gguf":
        path = Path(source.path)
        return (str(path.parent),), {"gguf_file": path.name}
    return (source.path,), {}


def markdown(record: dict) -> str:
    """The RESULTS.md section: each way per concurrency level, and its ratio to one at a time."""
    results, peaks = record["results"], record["peak_rss_bytes"]
    base = results["one at a time"]
    rows = ["| clients | honed serve | aggregate tok/s | x one at a time | TTFT p50 (s) "
            "| TTFT p95 (s) | peak RSS (GB) |", "|---" * 7 + "|"]  # fmt: skip
    for n, first in enumerate(base):
        for server, levels in results.items():
            r = levels[n]
            rows.append(
                f"| {r['clients']} | {server} | {r['aggregate_tok_s']:.1f} "
                f"| {r['aggregate_tok_s'] / first['aggregate_tok_s']:.2f} "
                f"| {r['ttft_s']['median']:.3f} | {r['ttft_s']['p95']:.3f} "
                f"| {peaks.get(server, 0) / 1e9:.2f} |"
            )
    m = record["machine"]
    return "\n".join([
        HEADING, "",
        f"Measured {record['date']} on {m['cpu']} ({m['cores']} cores, {m['threads']} threads); "
        f"`{record['command']}`; {record['model']} on transformers (float32, CPU).",
        f"Streaming /v1/completions, greedy, {record['max_tokens']} tokens at most, "
        f"{record['requests_per_level']} requests per level spread over the clients, "
        f"{record['rounds']} rounds alternating the order; a copy per request and batched "
        "run with --max-concurrency set to the most clients (the copies split the threads). "
        "Peak RSS is the server process's over the whole run.",
        "", *rows, "",
    ])  # fmt: skip


if __name__ == "__main__":
    main()
