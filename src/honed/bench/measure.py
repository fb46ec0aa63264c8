"""Measure one model (run as its own process by `honed bench`): latency, speed, size, memory.

    python -m honed.bench.measure < job.json   # prints one JSON line

The job holds the model reference, the BenchConfig, the prompts and the machine's measured
bandwidth; the result holds per-query latency and time-to-first-token statistics, prompt and
decode tokens/s, batched throughput, load time, size on disk, peak memory and the roofline.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from honed.bench.memory import peak_rss_bytes
from honed.bench.roofline import parameter_count, roofline, weight_bytes_per_token
from honed.bench.stats import summarize
from honed.config import BenchConfig
from honed.quantize.checks import size_on_disk
from honed.runtime.base import Backend, Completion, GenerationParams, choose_backend, load_backend


def model_path(ref: str, backend: str) -> tuple[str, Path | None]:
    """The backend that will run ref, and the file or directory its weights are in."""
    name, source = choose_backend(ref, backend)
    if source.kind == "adapter":
        return name, Path(source.path)
    return name, Path(source.path) if source.kind in ("gguf", "hf-dir") else None


def _load(ref: str, cfg: BenchConfig) -> Backend:
    options: dict[str, Any] = {"n_threads": cfg.threads, "dtype": cfg.dtype, "batch_size": 1}
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    return load_backend(ref, backend=cfg.backend, **options)


def _per_query(model: Backend, prompts: list[str], cfg: BenchConfig) -> list[Completion]:
    params = GenerationParams(max_new_tokens=cfg.max_new_tokens, temperature=0.0)
    for _ in range(cfg.warmup):
        model.generate([prompts[0]], params)
    return [model.generate([p], params)[0] for _ in range(cfg.runs) for p in prompts]


def _batched(model: Backend, prompts: list[str], cfg: BenchConfig) -> dict[str, float] | None:
    """Generated tokens per second when prompts come batch_size at a time."""
    if cfg.batch_size < 2:
        return None
    if hasattr(model, "batch_size"):
        model.batch_size = cfg.batch_size
    params = GenerationParams(max_new_tokens=cfg.max_new_tokens, temperature=0.0)
    start, tokens = time.perf_counter(), 0
    for i in range(0, len(prompts), cfg.batch_size):
        tokens += sum(
            c.completion_tokens for c in model.generate(prompts[i : i + cfg.batch_size], params)
        )
    seconds = time.perf_counter() - start
    return {"batch_size": cfg.batch_size, "tokens": tokens, "tok_s": tokens / seconds}


def speeds(done: list[Completion]) -> dict[str, Any]:
    """Latency, TTFT, prompt and decode speed statistics over the timed queries."""
    decode = [(c.completion_tokens - 1) / max(c.total_s - c.ttft_s, 1e-9)
              for c in done if c.completion_tokens > 1]  # fmt: skip
    prompt = [c.prompt_tokens / max(c.ttft_s, 1e-9) for c in done]
    return {
        "queries": len(done),
        "latency_s": summarize([c.total_s for c in done]),
        "ttft_s": summarize([c.ttft_s for c in done]),
        "prompt_tok_s": summarize(prompt),
        "decode_tok_s": summarize(decode),
        "mean_new_tokens": sum(c.completion_tokens for c in done) / len(done),
    }


def peak_memory() -> dict[str, float | None]:
    """Peak resident memory of this process, and peak CUDA memory when a GPU was used."""
    rss = peak_rss_bytes()
    gpu = None
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            gpu = torch.cuda.max_memory_allocated() / 1e6
    return {"peak_rss_mb": rss / 1e6, "peak_gpu_mb": gpu}


def measure(ref: str, cfg: BenchConfig, prompts: list[str], bandwidth: float) -> dict[str, Any]:
    """Every number of one model's bench row."""
    backend, path = model_path(ref, cfg.backend)
    start = time.perf_counter()
    model = _load(ref, cfg)
    load_s = time.perf_counter() - start
    try:
        result = speeds(_per_query(model, prompts, cfg))
        result["batched"] = _batched(model, prompts, cfg)
    finally:
        model.close()
    per_token = weight_bytes_per_token(path) if path else None
    return {
        "model": ref, "backend": model.name if hasattr(model, "name") else backend,
        "load_s": load_s, "size_bytes": size_on_disk(path) if path else None,
        "parameters": parameter_count(path) if path else None,
        **result, **peak_memory(),
        "roofline": roofline(bandwidth, per_token, result["decode_tok_s"]["median"]),
    }  # fmt: skip


def main() -> None:
    from honed.errors import HonedError

    job = json.load(sys.stdin)
    cfg = BenchConfig(**job["config"])
    try:
        result = measure(job["model"], cfg, job["prompts"], job["bandwidth_gbs"])
    except HonedError as exc:
        print(f"honed: {exc}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
