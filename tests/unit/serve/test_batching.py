"""Continuous batching for the server: concurrent streams of one model decode together, each
giving what its prompt gives alone, joining and leaving on its own. On llama.cpp (the real
SmolLM2 Q4_1 GGUF) and on transformers (a tiny random Llama with SmolLM2's tokenizer)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

pytest.importorskip("llama_cpp")

from honed.errors import HonedError  # noqa: E402
from honed.runtime import Backend, GenerationParams, Usage, load_backend  # noqa: E402
from honed.serve.batching import BatchedModel  # noqa: E402

from ..runtime.test_llamacpp_backend import smollm2_path  # noqa: E402

PROMPTS = ["The three primary colors are", "def add(a, b):", "Once upon a time, in a land far"]
GREEDY = GenerationParams(max_new_tokens=24)
SAMPLED = GenerationParams(max_new_tokens=24, temperature=0.9, top_p=0.95, seed=5)


@pytest.fixture(scope="module", params=["llama.cpp", "transformers"])
def kind(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def load(kind, request) -> Callable[..., Backend]:
    """Loads the kind's model, a fresh copy each call (a context of 512 tokens)."""
    if kind == "llama.cpp":
        path = smollm2_path()
        return lambda **kw: load_backend(str(path), n_ctx=512, n_threads=1, **kw)
    path = request.getfixturevalue("tiny_causal_real_tokenizer")  # 512 positions
    return lambda **_: load_backend(str(path), backend="transformers", dtype="float32")


@pytest.fixture(scope="module")
def llama(load) -> Iterator[Backend]:
    backend = load(reuse_prefix=False)
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


@pytest.fixture
def batched(load) -> Callable[..., BatchedModel]:
    return lambda width, **options: BatchedModel(load(), width, **options)


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


def test_concurrent_streams_are_what_each_prompt_gives_alone(batched, llama, alone) -> None:
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


def test_prompts_read_a_few_tokens_a_step_give_the_same_replies(batched, alone) -> None:
    model = batched(width=3, prefill_chunk=3)  # chunked prefill: each prompt over 2-4 steps
    try:
        results = in_threads(model, [(p, GREEDY) for p in PROMPTS])
    finally:
        model.close()
    assert [text for text, _ in results] == [alone[p, 0.0] for p in PROMPTS]
    assert all(usage.completion_tokens == 24 for _, usage in results)


def test_a_stream_closed_early_frees_its_lane_for_the_next(batched, alone) -> None:
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


def test_rows_end_on_their_own_stop_strings(batched, alone) -> None:
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


def test_a_prompt_past_the_context_is_a_clear_error(batched) -> None:
    model = batched(width=2)
    try:
        with pytest.raises(HonedError, match="context"):
            next(model.stream("word " * 600, GREEDY))
        assert "".join(model.stream(PROMPTS[1], GREEDY))  # the model still serves
    finally:
        model.close()


def test_a_runtime_failure_fails_the_batch_and_the_next_request_is_served(batched, alone) -> None:
    model = batched(width=2)
    fail_third_call(model)
    try:
        with pytest.raises(RuntimeError, match="decode failed"):
            "".join(model.stream(PROMPTS[0], GREEDY))
        assert "".join(model.stream(PROMPTS[1], GREEDY)) == alone[PROMPTS[1], 0.0]
    finally:
        model.close()


def fail_third_call(model: BatchedModel) -> None:
    """Make the third call into the runtime (a decode step) raise."""
    is_llama = hasattr(model.decoder, "ctx")
    owner, name = (model.decoder.ctx, "decode") if is_llama else (model.decoder.model, "forward")
    real, calls = getattr(owner, name), []

    def fails_once(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("decode failed")
        return real(*args, **kwargs)

    setattr(owner, name, fails_once)


def test_the_kv_cache_size_is_reported_and_a_large_one_warned_about(kind, batched, caplog) -> None:
    from types import SimpleNamespace

    from honed.serve.run import warn_kv

    model = batched(width=3)
    try:
        # K and V of each layer's KV heads: SmolLM2-135M in f16 (30 layers, 3 heads of 64
        # dims), the tiny Llama in float32 (2 layers, 2 heads of 16 dims); 512 cells a lane
        per_token = {"llama.cpp": 30 * 3 * (64 + 64) * 2, "transformers": 2 * 2 * (16 + 16) * 4}
        assert model.cells == 512
        assert model.kv_bytes == 3 * 512 * per_token[kind]
    finally:
        model.close()
    warn_kv(SimpleNamespace(width=3, cells=512, kv_bytes=model.kv_bytes))
    assert not caplog.records
    warn_kv(SimpleNamespace(width=64, cells=131072, kv_bytes=2**50))
    assert "lower --max-concurrency or --n-ctx" in caplog.text


def test_rows_of_other_lengths_join_and_leave_while_others_run(batched, llama) -> None:
    jobs = [
        (PROMPTS[i % 3], GenerationParams(max_new_tokens=n, temperature=t, seed=i))
        for i, (n, t) in enumerate([(30, 0.0), (3, 0.0), (9, 0.7), (17, 0.0), (5, 0.7), (12, 0.0)])
    ]
    expected = [llama.generate([prompt], params)[0].text for prompt, params in jobs]
    model = batched(width=3)  # rows come and go at other steps
    try:
        results = in_threads(model, jobs)
    finally:
        model.close()
    assert [text for text, _ in results] == expected
    assert [usage.completion_tokens for _, usage in results] == [30, 3, 9, 17, 5, 12]
