"""honed's row decoder: what `generate` would pick, rows leave the batch, batch-free seeds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import Gemma2Config, Gemma2ForCausalLM

from honed.runtime import GenerationParams, load_backend, row_decode

PROMPTS = ["add one and two", "add three and four and five and six", "def add(a, b):\n    return"]


@pytest.fixture(scope="module")
def backend(lively_dir: Path):
    return load_backend(str(lively_dir), backend="transformers", device="cpu", dtype="fp32")


def padded(backend, prompts: list[str]) -> dict[str, torch.Tensor]:
    return backend.tokenizer(prompts, padding=True, return_tensors="pt")


def test_causal_models_use_it_and_t5_does_not(backend, lively_t5_dir: Path) -> None:
    assert backend._row_decode
    t5 = load_backend(str(lively_t5_dir), device="cpu")
    assert not row_decode.supports_row_decode(t5.model)


def test_greedy_picks_what_generate_picks(backend) -> None:
    inputs = padded(backend, PROMPTS)
    with torch.inference_mode():
        expected = backend.model.generate(**inputs, max_new_tokens=16, do_sample=False)
        out = row_decode.decode(
            backend.model, inputs, 16, GenerationParams(), eos=set(), stopped=lambda row, ids: False
        )
    new = expected[:, inputs["input_ids"].shape[1] :].tolist()
    assert out.ids == new
    assert (out.steps, out.row_steps) == (16, 16 * len(PROMPTS))


def test_a_finished_row_leaves_the_batch(backend) -> None:
    """Row 0 ends at its 3rd token; the others go on to the budget with the same tokens."""
    inputs = padded(backend, PROMPTS)
    with torch.inference_mode():
        free = row_decode.decode(backend.model, inputs, 12, GenerationParams(), eos=set(),
                                 stopped=lambda row, ids: False)  # fmt: skip
        end = free.ids[0][2]
        assert end not in free.ids[0][:2]
        eos = {end}
        cut = row_decode.decode(backend.model, inputs, 12, GenerationParams(), eos=eos,
                                stopped=lambda row, ids: False)  # fmt: skip
    assert cut.ids[0] == free.ids[0][:3]
    for before, after in zip(free.ids[1:], cut.ids[1:], strict=True):
        assert after == (before[: before.index(end) + 1] if end in before else before)
    assert cut.row_steps < 12 * len(PROMPTS)  # the finished row stopped costing work


def test_stop_string_ends_a_row(backend) -> None:
    inputs = padded(backend, PROMPTS[:1])
    with torch.inference_mode():
        out = row_decode.decode(backend.model, inputs, 12, GenerationParams(), eos=set(),
                                stopped=lambda row, ids: len(ids) == 5)  # fmt: skip
    assert len(out.ids[0]) == 5 and out.stopped == [True]


def sampled(backend, prompts: list[str], seed: int, top_p: float = 0.95) -> list[str]:
    params = GenerationParams(max_new_tokens=12, temperature=1.0, top_p=top_p, seed=seed)
    return [c.text for c in backend.generate(prompts, params)]


def test_a_sample_does_not_depend_on_its_batch(backend) -> None:
    together = sampled(backend, PROMPTS, seed=7)
    assert together == [sampled(backend, [p], seed=7)[0] for p in PROMPTS]
    assert together == sampled(backend, PROMPTS[::-1], seed=7)[::-1]
    assert together != sampled(backend, PROMPTS, seed=8)


def test_a_tiny_nucleus_is_greedy(backend) -> None:
    greedy = [c.text for c in backend.generate(PROMPTS, GenerationParams(max_new_tokens=12))]
    assert sampled(backend, PROMPTS, seed=3, top_p=1e-6) == greedy


def test_unseeded_samples_differ(backend) -> None:
    params = GenerationParams(max_new_tokens=12, temperature=1.0)
    first, second = (backend.generate(PROMPTS[:1], params)[0].text for _ in range(2))
    assert first != second


def test_sliding_window_layers_decode_like_generate(backend) -> None:
    """A Gemma2-shaped model (every other layer a sliding window of 8 tokens, shorter than
    the prompts) decodes what `generate` decodes, rows dropping out of both cache kinds."""
    config = Gemma2Config(vocab_size=len(backend.tokenizer), hidden_size=64,
                          intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                          num_key_value_heads=1, head_dim=32, sliding_window=8,
                          pad_token_id=backend.tokenizer.pad_token_id)  # fmt: skip
    torch.manual_seed(0)
    model = Gemma2ForCausalLM(config).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.2)
    assert row_decode.supports_row_decode(model)
    inputs = padded(backend, PROMPTS)
    with torch.inference_mode():
        expected = model.generate(**inputs, max_new_tokens=12, do_sample=False)
        free = row_decode.decode(model, inputs, 12, GenerationParams(), eos=set(),
                                 stopped=lambda row, ids: False)  # fmt: skip
        end = free.ids[1][4]
        cut = row_decode.decode(model, inputs, 12, GenerationParams(), eos={end},
                                stopped=lambda row, ids: False)  # fmt: skip
    assert free.ids == expected[:, inputs["input_ids"].shape[1] :].tolist()
    for before, after in zip(free.ids, cut.ids, strict=True):
        assert after == (before[: before.index(end) + 1] if end in before else before)
