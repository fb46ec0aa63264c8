"""The transformers backend on tiny random models: batching, stops, sampling, timing, chat."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from transformers import GenerationConfig

from honed.errors import HonedError
from honed.runtime import Backend, GenerationParams, load_backend

PROMPTS = ["add one and two", "add three and four and five and six", "def add(a, b):\n    return"]


@pytest.fixture(scope="module")
def causal(lively_dir: Path) -> Backend:
    return load_backend(str(lively_dir), backend="transformers", device="cpu", dtype="fp32")


@pytest.fixture(scope="module")
def seq2seq(lively_t5_dir: Path) -> Backend:
    return load_backend(str(lively_t5_dir), device="cpu")


def greedy(max_new_tokens: int = 12, stop: tuple[str, ...] = ()) -> GenerationParams:
    return GenerationParams(max_new_tokens=max_new_tokens, stop=stop)


def plain_stop(text: str) -> str:
    """A two-character piece of ASCII from the middle of a generated text, to use as a stop."""
    for i in range(3, len(text) - 1):
        piece = text[i : i + 2]
        if piece.isascii() and piece.isprintable() and text.find(piece) == i:
            return piece
    pytest.skip("no plain two-character piece in the generated text")


def test_is_a_backend(causal: Backend) -> None:
    assert isinstance(causal, Backend)
    assert causal.name == "transformers" and causal.context_size == 256


def test_greedy_is_deterministic(causal: Backend) -> None:
    first = causal.generate(PROMPTS, greedy())
    second = causal.generate(PROMPTS, greedy())
    assert [c.text for c in first] == [c.text for c in second]
    assert len({c.text for c in first}) == len(PROMPTS)  # the output depends on the prompt


def test_left_padded_batch_equals_one_by_one(causal: Backend) -> None:
    lengths = {causal.count_tokens(p) for p in PROMPTS}
    assert len(lengths) == len(PROMPTS)  # the batch really is padded
    batch = causal.generate(PROMPTS, greedy())
    alone = [causal.generate([p], greedy())[0] for p in PROMPTS]
    assert [c.text for c in batch] == [c.text for c in alone]
    assert [c.completion_tokens for c in batch] == [c.completion_tokens for c in alone]


def test_token_counts_and_length_finish(causal: Backend) -> None:
    tokenizer = causal.tokenizer
    out = causal.generate(PROMPTS, greedy(max_new_tokens=7))
    for prompt, completion in zip(PROMPTS, out, strict=True):
        assert completion.prompt_tokens == len(tokenizer(prompt)["input_ids"])
        assert completion.completion_tokens == 7
        assert completion.finish_reason == "length"
        assert 0 < completion.ttft_s <= completion.total_s


def test_stop_sequence_truncates_and_stops(causal: Backend) -> None:
    full = causal.generate([PROMPTS[0]], greedy(max_new_tokens=24))[0]
    stop = plain_stop(full.text)
    cut = causal.generate([PROMPTS[0]], greedy(max_new_tokens=24, stop=("never seen", stop)))[0]
    assert cut.text == full.text[: full.text.index(stop)]
    assert cut.finish_reason == "stop"
    assert cut.completion_tokens < full.completion_tokens  # generation ended early


def test_stop_applies_per_row_in_a_batch(causal: Backend) -> None:
    full = causal.generate(PROMPTS, greedy(max_new_tokens=24))
    stop = plain_stop(full[0].text)
    out = causal.generate(PROMPTS, greedy(max_new_tokens=24, stop=(stop,)))
    for before, after in zip(full, out, strict=True):
        expected = before.text.split(stop)[0]
        assert after.text == expected
        assert after.finish_reason == ("stop" if stop in before.text else "length")


@pytest.mark.parametrize("row_decode", [True, False])
def test_finished_ends_one_row_where_it_says(
    causal: Backend, row_decode: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`finished(prompt, text)` ends that row at the first token that makes it true, its text
    kept whole; the other rows are untouched (honed's row decoder and `generate` alike)."""
    monkeypatch.setattr(causal, "_row_decode", row_decode)
    full = causal.generate(PROMPTS, greedy(max_new_tokens=24))
    seen: list[str] = []

    def finished(prompt: str, text: str) -> bool:
        seen.append(prompt)
        return prompt == PROMPTS[1] and len(text) >= 8

    params = GenerationParams(max_new_tokens=24, finished=finished)
    out = causal.generate(PROMPTS, params)
    assert full[1].text.startswith(out[1].text) and len(out[1].text) >= 8
    assert out[1].finish_reason == "stop" and out[1].completion_tokens < 24
    assert len(full[1].text) > len(out[1].text)  # it did end early
    for i in (0, 2):
        assert (out[i].text, out[i].finish_reason) == (full[i].text, full[i].finish_reason)
    assert set(seen) == set(PROMPTS)
    streamed = "".join(causal.stream(PROMPTS[1], params))
    assert streamed == out[1].text


def test_seeded_sampling_is_reproducible(causal: Backend) -> None:
    def sample(seed: int) -> list[str]:
        params = GenerationParams(max_new_tokens=12, temperature=1.0, top_p=0.95, seed=seed)
        return [c.text for c in causal.generate(PROMPTS, params)]

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)


def test_stream_concatenates_to_generate(causal: Backend) -> None:
    for prompt in PROMPTS:
        params = greedy(max_new_tokens=20)
        pieces = list(causal.stream(prompt, params))
        assert len(pieces) > 1
        assert "".join(pieces) == causal.generate([prompt], params)[0].text


def test_stream_stops_at_stop_sequence(causal: Backend) -> None:
    full = causal.generate([PROMPTS[1]], greedy(max_new_tokens=24))[0].text
    stop = plain_stop(full)
    assert "".join(causal.stream(PROMPTS[1], greedy(24, (stop,)))) == full[: full.index(stop)]


def test_stream_can_be_abandoned(causal: Backend) -> None:
    stream = causal.stream(PROMPTS[0], greedy(max_new_tokens=200))
    assert next(stream)
    stream.close()  # joins the generation thread, which stops at its next step


def test_end_of_sequence_finishes_a_row(lively_dir: Path, tmp_path: Path, causal: Backend) -> None:
    """A model whose eos ids (a list, as Qwen ships) include the 3rd token greedy emits."""
    ids = causal.tokenizer(PROMPTS[0], return_tensors="pt")
    new = causal.model.generate(**ids, max_new_tokens=3, do_sample=False)[0, -3:].tolist()
    assert new[2] not in new[:2]
    shutil.copytree(lively_dir, tmp_path / "m")
    eos = [causal.tokenizer.eos_token_id, new[2]]
    GenerationConfig(eos_token_id=eos, pad_token_id=eos[0]).save_pretrained(tmp_path / "m")
    backend = load_backend(str(tmp_path / "m"), device="cpu")
    first, other = backend.generate([PROMPTS[0], PROMPTS[2]], greedy(max_new_tokens=10))
    assert (first.completion_tokens, first.finish_reason) == (3, "stop")
    assert other.completion_tokens == 10 or other.finish_reason == "stop"


def test_new_tokens_are_capped_by_the_context(causal: Backend) -> None:
    prompt = "add one and two " * 60
    n = causal.count_tokens(prompt)
    assert 200 < n < 256
    out = causal.generate([prompt], greedy(max_new_tokens=100))[0]
    assert (out.completion_tokens, out.finish_reason) == (256 - n, "length")
    with pytest.raises(HonedError, match="context"):
        causal.generate([prompt * 2], greedy())


def test_empty_prompt_is_an_error(causal: Backend) -> None:
    with pytest.raises(HonedError, match="empty prompt"):
        causal.generate([""], greedy())


def test_chat_prompt_uses_the_template(causal: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert causal.has_chat_template
    prompt = causal.chat_prompt(messages)
    assert prompt == "<|system|>Be brief.<|end|><|user|>hi<|end|><|assistant|>"
    assert causal.generate([prompt], greedy(max_new_tokens=3))[0].completion_tokens == 3
    monkeypatch.setattr(causal.tokenizer, "chat_template", None)
    assert not causal.has_chat_template
    with pytest.raises(HonedError, match="no chat template"):
        causal.chat_prompt(messages)


def test_seq2seq_generates_like_transformers(seq2seq: Backend) -> None:
    assert seq2seq.context_size == 512
    prompts = ["add one and two", "add three and four and five and six"]
    out = seq2seq.generate(prompts, greedy(max_new_tokens=8))
    tokenizer, model = seq2seq.tokenizer, seq2seq.model
    for prompt, completion in zip(prompts, out, strict=True):
        ids = tokenizer(prompt, return_tensors="pt")
        expected = model.generate(**ids, max_new_tokens=8, do_sample=False)[0, 1:]
        assert completion.text == tokenizer.decode(expected, skip_special_tokens=True)
        assert completion.completion_tokens == len(expected)
        assert completion.prompt_tokens == ids["input_ids"].shape[1]
        assert 0 < completion.ttft_s <= completion.total_s
    assert out[0].text and out[0].finish_reason == "length"
    assert out[1].finish_reason == "stop"  # this one emits </s> early
    assert "".join(seq2seq.stream(prompts[0], greedy(8))) == out[0].text
