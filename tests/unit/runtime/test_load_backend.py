"""load_backend: choosing a backend, and one-line errors for what cannot be loaded."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from honed.errors import HonedError
from honed.models.resolve import resolve
from honed.runtime import base, load_backend
from honed.runtime.base import choose_backend

SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture
def fake_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"not really a gguf")
    return path


def gguf_artifact(root: Path, files: list[str]) -> Path:
    root.mkdir()
    (root / "manifest.json").write_text(json.dumps({"kind": "quantized", "format": "gguf"}))
    for name in files:
        (root / name).write_bytes(b"gguf")
    return root


def test_import_is_light() -> None:
    code = "import sys, honed.runtime; print(sorted({'torch', 'llama_cpp'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_auto_picks_llama_cpp_for_gguf_when_installed(
    fake_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "llama_cpp_available", lambda: True)
    assert choose_backend(str(fake_gguf)) == ("llama.cpp", base.resolve(str(fake_gguf)))
    monkeypatch.setattr(base, "llama_cpp_available", lambda: False)
    name, source = choose_backend(str(fake_gguf))
    assert (name, source.kind) == ("transformers", "gguf")  # dequantized by transformers


def test_auto_picks_transformers_for_hf_dirs(tiny_causal: Path) -> None:
    name, source = choose_backend(str(tiny_causal))
    assert (name, source.kind) == ("transformers", "hf-dir")


def test_gguf_artifact_resolves_to_its_file(tmp_path: Path) -> None:
    root = gguf_artifact(tmp_path / "art", ["model-q4_k_m.gguf"])
    name, source = choose_backend(str(root), "llama.cpp")
    assert (name, source.kind) == ("llama.cpp", "gguf")
    assert source.path == str(root / "model-q4_k_m.gguf")
    # everything else that reads weights (training, tokenizers, distillation) sees the file too
    assert resolve(str(root)) == source and source.ref == str(root)
    two = gguf_artifact(tmp_path / "two", ["a.gguf", "b.gguf"])
    with pytest.raises(HonedError, match="2 .gguf files"):
        choose_backend(str(two))


def test_unknown_backend(tiny_causal: Path) -> None:
    choices = "llama.cpp, onnxruntime, transformers"
    with pytest.raises(HonedError, match=f"unknown backend 'vllm2'.*{choices}"):
        load_backend(str(tiny_causal), backend="vllm2")


@pytest.mark.parametrize("ref", ["missing/dir/model.gguf", "./no-such-dir", "not a model"])
def test_missing_model(ref: str) -> None:
    with pytest.raises(HonedError, match="not found"):
        load_backend(ref)


def test_llama_cpp_needs_a_gguf(tiny_causal: Path) -> None:
    with pytest.raises(HonedError, match="runs .gguf files"):
        load_backend(str(tiny_causal), backend="llama.cpp")


def test_llama_cpp_missing_says_how_to_install(
    fake_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if importlib.util.find_spec("llama_cpp") is not None:
        import honed.runtime.llamacpp_backend as module

        monkeypatch.setattr(module, "llama_cpp", None)
    with pytest.raises(HonedError, match="pip install llama-cpp-python"):
        load_backend(str(fake_gguf), backend="llama.cpp")


def test_options_are_checked(tiny_causal: Path) -> None:
    with pytest.raises(HonedError, match="no option n_gpu_layers"):
        load_backend(str(tiny_causal), backend="transformers", n_gpu_layers=1)
    with pytest.raises(HonedError, match="unknown dtype 'int3'"):
        load_backend(str(tiny_causal), dtype="int3")
    with pytest.raises(HonedError, match="unknown device 'tpu9'"):
        load_backend(str(tiny_causal), device="tpu9")
    backend = load_backend(str(tiny_causal), device="cpu", n_gpu_layers=1)  # auto: ignored
    assert backend.name == "transformers"


def test_a_model_that_fails_to_load(tiny_causal: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(tiny_causal / "config.json", broken / "config.json")  # no weights
    with pytest.raises(HonedError, match="broken"):
        load_backend(str(broken))
