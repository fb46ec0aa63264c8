"""Batched llama.cpp decoding: each row is the completion its prompt gets alone, and ends on
its own (stop string, `finished`, end of turn, budget), on the real SmolLM2 Q4_1 GGUF."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("llama_cpp")

from honed.errors import HonedError  # noqa: E402
from honed.runtime import Backend, GenerationParams, load_backend  # noqa: E402

from .test_llamacpp_backend import QUESTION, smollm2_path  # noqa: E402

PROMPTS = ["The three primary colors are", "def add(a, b):", "Once upon a time, in a land far"]


@pytest.fixture(scope="module")
def llama() -> Iterator[Backend]:
    backend = load_backend(str(smollm2_path()), n_ctx=512, n_threads=1, reuse_prefix=False)
    yield backend
    backend.close()


def alone(llama: Backend, prompts: list[str], params: GenerationParams) -> list:
    return [llama.generate([prompt], params)[0] for prompt in prompts]


@pytest.mark.parametrize(
    "params",
    [
        GenerationParams(max_new_tokens=24),
        GenerationParams(max_new_tokens=24, temperature=0.9, top_p=0.95, seed=5),
    ],
    ids=["greedy", "seeded sampling"],
)
def test_each_row_is_what_its_prompt_gives_alone(llama: Backend, params) -> None:
    batch = llama.generate(PROMPTS, params)
    single = alone(llama, PROMPTS, params)
    assert [c.text for c in batch] == [c.text for c in single]
    assert [c.completion_tokens for c in batch] == [c.completion_tokens for c in single] == [24] * 3
    assert [c.prompt_tokens for c in batch] == [c.prompt_tokens for c in single]
    assert {c.finish_reason for c in batch} == {"length"}
    # the batch's timings: first token of the batch, then the whole batch
    assert len({(c.ttft_s, c.total_s) for c in batch}) == 1
    assert 0 < batch[0].ttft_s < batch[0].total_s
    # another batch around a prompt does not change its row
    again = llama.generate([PROMPTS[2], PROMPTS[0]], params)
    assert [c.text for c in again] == [single[2].text, single[0].text]


def test_rows_end_on_their_own(llama: Backend) -> None:
    full = alone(llama, PROMPTS[:2], GenerationParams(max_new_tokens=24))
    stop = full[0].text.split()[2]  # a word of the first row only
    assert stop not in full[1].text
    cut = llama.generate(PROMPTS[:2], GenerationParams(max_new_tokens=24, stop=(stop,)))
    assert cut[0].text == full[0].text[: full[0].text.index(stop)]
    assert (cut[0].finish_reason, cut[1].finish_reason) == ("stop", "length")
    assert cut[0].completion_tokens < 24 and cut[1].text == full[1].text

    def finished(prompt: str, text: str) -> bool:
        return prompt == PROMPTS[1] and len(text) >= 8

    ended = llama.generate(PROMPTS[:2], GenerationParams(max_new_tokens=24, finished=finished))
    assert ended[0].text == full[0].text and ended[0].finish_reason == "length"
    assert full[1].text.startswith(ended[1].text) and len(ended[1].text) >= 8
    assert ended[1].finish_reason == "stop" and ended[1].completion_tokens < 24


def test_chat_row_ends_at_end_of_turn_beside_a_long_row(llama: Backend) -> None:
    chat = llama.chat_prompt(QUESTION)
    params = GenerationParams(max_new_tokens=60)
    batch = llama.generate([chat, PROMPTS[2]], params)
    single = alone(llama, [chat, PROMPTS[2]], params)
    assert batch[0].text == single[0].text and "4" in batch[0].text
    assert batch[0].finish_reason == "stop" and batch[0].completion_tokens < 60
    assert batch[1].completion_tokens == single[1].completion_tokens


def test_each_row_has_its_own_budget_and_a_too_long_prompt_is_refused() -> None:
    small = load_backend(str(smollm2_path()), n_ctx=200, n_threads=1)
    try:
        long = "one two three four five " * 38
        n = small.count_tokens(long)
        out = small.generate([long, PROMPTS[0]], GenerationParams(max_new_tokens=50))
        assert [c.completion_tokens for c in out] == [200 - n, 50]
        assert small.generate([PROMPTS[1], long[:40]], GenerationParams(max_new_tokens=8))
        with pytest.raises(HonedError, match="context"):
            small.generate([PROMPTS[0], long * 2], GenerationParams(max_new_tokens=8))
    finally:
        small.close()


def test_waiting_prompts_take_the_places_of_ended_rows(llama: Backend) -> None:
    narrow = load_backend(
        str(smollm2_path()), n_ctx=512, n_threads=1, reuse_prefix=False, batch_size=2
    )
    try:
        prompts = [*PROMPTS, "1, 2, 3, 4,", "The capital of France is"]
        # rows end at different steps, so later prompts start while others still decode
        params = GenerationParams(
            max_new_tokens=20, finished=lambda prompt, text: len(text) >= len(prompt) // 2
        )
        out = narrow.generate(prompts, params)
        single = alone(llama, prompts, params)
        assert [c.text for c in out] == [c.text for c in single]
        assert [c.completion_tokens for c in out] == [c.completion_tokens for c in single]
        assert len({c.completion_tokens for c in out}) > 1
        assert narrow._batch.seqs == 2  # never more rows at once than batch_size
    finally:
        narrow.close()
