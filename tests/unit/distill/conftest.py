"""A tiny seeded Llama for the distillation unit tests (no tokenizer, nothing on disk)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM


@pytest.fixture(scope="module")
def tiny_llama() -> Callable[[int], LlamaForCausalLM]:
    """Builds a 2-layer, 64-dim Llama over `vocab` tokens, seeded, in eval mode."""

    def build(vocab: int) -> LlamaForCausalLM:
        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=vocab,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
        return LlamaForCausalLM(config).eval()

    return build
