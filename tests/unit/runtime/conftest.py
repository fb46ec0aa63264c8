"""Fixtures for the backend tests: tiny random models with weights that make lively output."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny models run fastest on one thread, above all on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def reinitialized(src: Path, path: Path, config_cls, model_cls, **scale: float) -> Path:
    """A copy of a tiny model dir with fresh random weights drawn at another scale."""
    shutil.copytree(src, path, dirs_exist_ok=True)
    config = config_cls.from_pretrained(path)
    for name, value in scale.items():
        setattr(config, name, value)
    torch.manual_seed(0)
    model_cls(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def lively_dir(tiny_causal: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with larger random weights, so its output depends on the whole prompt."""
    return reinitialized(tiny_causal, tmp_path_factory.mktemp("lively"), LlamaConfig,
                         LlamaForCausalLM, initializer_range=0.2)  # fmt: skip


@pytest.fixture(scope="session")
def lively_t5_dir(tiny_seq2seq: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny T5 with larger random weights (at the default scale it only emits padding)."""
    return reinitialized(tiny_seq2seq, tmp_path_factory.mktemp("lively-t5"), T5Config,
                         T5ForConditionalGeneration, initializer_factor=20.0)  # fmt: skip
