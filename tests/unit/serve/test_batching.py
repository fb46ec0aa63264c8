"""Continuous batching for the server: concurrent streams of one llama.cpp model decode
together, each giving what its prompt gives alone, joining and leaving on its own (the real
SmolLM2 Q4_1 GGUF)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

pytest.importorskip("llama_cpp")

from honed.errors import HonedError  # noqa: E402
from honed.runtime import Backend, GenerationParams, Usage, load_backend  # noqa: E402
from honed.serve.batching import BatchedModel  # noqa: E402

from ..runtime.test_llamacpp_backend import smollm2_path  # noqa: E402

PROMPTS = ["The three primary colors are", "def add(a, b):", "Once upon a time, in a land far"]
GREEDY = GenerationParams(max_new_tokens=24)
SAMPLED = GenerationParams(max_new_tokens=24, temperature=0.9, top_p=0.95, seed=5)


@pytest.fixture(scope="module")
def llama() -> Iterator[Backend]:
    backend = load_backend(str(smollm2_path()), n_ctx=512, n_threads=1, reuse_prefix=False)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def alone(llama: Backend) -> dict[tuple[str, float], str]:
    """Each prompt's completion generated on its own, greedy and sampled."""
    return {
        (p, params.temperature): llama.generate([p], params)[0].text
        for p in PROMPTS
        for params in (GREEDY, SAMPLED)
    }


def batched(width: int, **options) -> BatchedModel:
    backend = load_backend(str(smollm2_path()), n_ctx=512, n_threads=1)
    return BatchedModel(backend, width, **options)


def in_threads(model: BatchedModel, jobs: list[tuple[str, GenerationParams]]) -> list:
    """Stream every job from its own thread at once; (text, usage) of each."""
    results: list = [None] * len(jobs)

    def run(i: int, prompt: str, params: GenerationParams) -> None:
        usage = Usage()
        results[i] = ("".join(model.stream(prompt, params, usage)), usage)

    threads = [threading.Thread(target=run, args=(i, *job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_concurrent_streams_are_what_each_prompt_gives_alone(llama, alone) -> None:
    model = batched(width=4)
    try:
        jobs = [(p, params) for p in PROMPTS for params in (GREEDY, SAMPLED)]  # 6 rows, 4 lanes
        results = in_threads(model, jobs)
        generated = model.generate(PROMPTS, GREEDY)  # the Backend protocol's batch call
    finally:
        model.close()
    assert [text for text, _ in results] == [alone[p, params.temperature] for p, params in jobs]
    assert [c.text for c in generated] == [alone[p, 0.0] for p in PROMPTS]
    assert [c.completion_tokens for c in generated] == [24] * 3
    for (prompt, _), (_, usage) in zip(jobs, results, strict=True):
        assert usage.completion_tokens == 24 and usage.finish_reason == "length"
        assert usage.prompt_tokens == len(llama.tokenize(prompt))
        assert usage.ttft_s is not None and usage.ttft_s > 0


def test_prompts_read_a_few_tokens_a_step_give_the_same_replies(alone) -> None:
    model = batched(width=3, prefill_chunk=3)  # chunked prefill: each prompt over 2-4 steps
    try:
        results = in_threads(model, [(p, GREEDY) for p in PROMPTS])
    finally:
        model.close()
    assert [text for text, _ in results] == [alone[p, 0.0] for p in PROMPTS]
    assert all(usage.completion_tokens == 24 for _, usage in results)


def test_a_stream_closed_early_frees_its_lane_for_the_next(alone) -> None:
    model = batched(width=1)
    try:
        usage = Usage()
        first = model.stream(PROMPTS[2], GenerationParams(max_new_tokens=400), usage)
        got = [next(first), next(first)]
        waiting = in_threads_later(model, PROMPTS[0])  # queued behind the only lane
        first.close()  # the client went away
        text = waiting()
    finally:
        model.close()
    assert alone[PROMPTS[2], 0.0].startswith("".join(got))
    assert usage.finish_reason == "length" and usage.completion_tokens < 400
    assert text == alone[PROMPTS[0], 0.0]


def in_threads_later(model: BatchedModel, prompt: str):
    """Start one greedy stream in a thread; returns a function that waits for its text."""
    out: list[str] = []
    thread = threading.Thread(target=lambda: out.append("".join(model.stream(prompt, GREEDY))))
    thread.start()

    def wait() -> str:
        thread.join(timeout=120)
        return out[0]

    return wait


def test_rows_end_on_their_own_stop_strings(alone) -> None:
    stop = alone[PROMPTS[0], 0.0].split()[2]
    assert stop not in alone[PROMPTS[1], 0.0]
    model = batched(width=2)
    try:
        cut = GenerationParams(max_new_tokens=24, stop=(stop,))
        (short, usage), (long, _) = in_threads(model, [(PROMPTS[0], cut), (PROMPTS[1], cut)])
    finally:
        model.close()
    assert short == alone[PROMPTS[0], 0.0][: alone[PROMPTS[0], 0.0].index(stop)]
    assert usage.finish_reason == "stop" and usage.completion_tokens < 24
    assert long == alone[PROMPTS[1], 0.0]


def test_a_prompt_past_the_context_is_a_clear_error() -> None:
    model = batched(width=2)
    try:
        with pytest.raises(HonedError, match="context"):
            next(model.stream("word " * 600, GREEDY))
        assert "".join(model.stream(PROMPTS[1], GREEDY))  # the model still serves
    finally:
        model.close()


def test_a_llama_cpp_failure_fails_the_batch_and_the_next_request_is_served(alone) -> None:
    model = batched(width=2)
    ctx, calls = model._ctx, []
    real = ctx.decode

    def fails_once(batch) -> None:  # noqa: ANN001
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("llama_decode failed")
        real(batch)

    ctx.decode = fails_once
    try:
        with pytest.raises(RuntimeError, match="llama_decode failed"):
            "".join(model.stream(PROMPTS[0], GREEDY))
        assert "".join(model.stream(PROMPTS[1], GREEDY)) == alone[PROMPTS[1], 0.0]
    finally:
        model.close()


def test_the_kv_cache_size_is_reported_and_a_large_one_warned_about(caplog) -> None:
    from types import SimpleNamespace

    from honed.serve.run import warn_kv

    model = batched(width=3)
    try:
        # SmolLM2-135M: 30 layers, 3 KV heads of 64 dims, K and V in f16, 512 cells a lane
        assert model.cells == 512
        assert model.kv_bytes == 3 * 512 * 30 * 3 * (64 + 64) * 2
    finally:
        model.close()
    warn_kv(SimpleNamespace(width=3, cells=512, kv_bytes=model.kv_bytes))
    assert not caplog.records
    warn_kv(SimpleNamespace(width=64, cells=131072, kv_bytes=2**50))
    assert "lower --max-concurrency or --n-ctx" in caplog.text
