"""`honed quantize` end to end on tiny models: every method makes an artifact that
load_backend loads and generates from, checked against its source; bad input leaves nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from honed.artifacts import read_manifest
from honed.cli import app
from honed.config import QuantizeConfig
from honed.errors import HonedError
from honed.quantize import methods
from honed.quantize.stage import quantize
from honed.runtime.base import GenerationParams, load_backend

pytestmark = pytest.mark.integration
GREEDY = GenerationParams(max_new_tokens=8, temperature=0.0)


def run(model: Path, method: str, out: Path, **extra) -> dict:
    cfg = QuantizeConfig(model=str(model), method=method, output=out, check_prompts=3,
                         check_max_new_tokens=8, **extra)  # fmt: skip
    return quantize(cfg).manifest


def assert_loads_and_generates(path: Path, backend: str) -> None:
    loaded = load_backend(str(path))
    try:
        assert loaded.name == backend
        (completion,) = loaded.generate(["add two and three"], GREEDY)
        assert completion.completion_tokens > 0
    finally:
        loaded.close()


@pytest.mark.parametrize(
    ("method", "backend"),
    [
        ("int8", "transformers"),
        ("int8-dynamic", "transformers"),
        ("int4-weight", "transformers"),
        ("nf4", "transformers"),
        ("onnx", "onnxruntime"),
        ("onnx-int8", "onnxruntime"),
    ],  # fmt: skip
)
def test_causal_methods_make_checked_loadable_artifacts(tiny_causal, tmp_path, method, backend):
    manifest = run(tiny_causal, method, tmp_path / method)
    assert manifest["kind"] == "quantized" and manifest["parent"]["path"] == str(tiny_causal)
    checks = manifest["checks"]
    assert set(checks) >= {"agreement", "kl", "special_tokens", "size_bytes", "warnings"}
    assert (
        checks["special_tokens"]["eos_matches"]
        and checks["special_tokens"]["chat_template_matches"]
    )
    assert checks["kl"]["mean_kl"] >= 0 and checks["size_bytes"]["export"] > 0
    assert read_manifest(tmp_path / method)["checks"] == checks
    assert_loads_and_generates(tmp_path / method, backend)


def _on_fast_path(model: torch.nn.Module, method: str) -> bool:
    """Whether a loaded model runs its quantized linears on honed's fast CPU path."""
    from honed.runtime.packed_cpu import Int4PackedLinear, Int8PackedLinear

    if method == "nf4":
        return all(
            m.compute_dtype == torch.bfloat16
            for m in model.modules()
            if type(m).__name__ == "Linear4bit"
        )
    fused = Int8PackedLinear if method == "int8" else Int4PackedLinear
    return any(isinstance(m, fused) for m in model.modules())


@pytest.mark.parametrize("method", ["int8", "int4-weight", "nf4"])
def test_quantized_linears_take_the_fast_path_unless_fp32_is_asked_for(
    tiny_causal, tmp_path, method
):
    from honed.runtime.packed_cpu import fast_compute_dtype

    run(tiny_causal, method, tmp_path / "q", check=False)
    kinds = {}
    for dtype in ("auto", "fp32"):
        loaded = load_backend(str(tmp_path / "q"), dtype=dtype)
        try:
            kinds[dtype] = _on_fast_path(loaded.model, method)  # type: ignore[attr-defined]
            assert loaded.generate(["def f"], GenerationParams(max_new_tokens=4))[0].text
        finally:
            loaded.close()
    assert kinds == {"auto": fast_compute_dtype() == torch.bfloat16, "fp32": False}


def test_float_onnx_matches_its_source_exactly(tiny_causal, tmp_path):
    checks = run(tiny_causal, "onnx", tmp_path / "onnx")["checks"]
    assert checks["agreement"]["exact_match"] == 1.0
    assert checks["kl"]["mean_kl"] < 1e-6
    assert checks["warnings"] == []


def test_causal_onnx_int8_is_the_fused_block_int8_graph(tiny_causal, tmp_path):
    """A decoder-only model the GenAI builder knows gets its fused graph: block-wise int8
    matmuls, fused attention, an int8 embedding table; its logits stay near the source's."""
    import numpy as np
    import onnx

    manifest = run(tiny_causal, "onnx-int8", tmp_path / "q")
    meta = manifest["method"]["onnx"]
    assert meta["exporter"].startswith("onnxruntime-genai") and meta["quantized_embeddings"] == 1
    graph = onnx.load(str(tmp_path / "q" / "decoder.onnx"), load_external_data=False).graph
    ops = {n.op_type for n in graph.node}
    assert {"MatMulNBits", "GroupQueryAttention", "GatherBlockQuantized"} <= ops
    assert "MatMul" not in ops
    source, export = load_backend(str(tiny_causal)), load_backend(str(tmp_path / "q"))
    try:
        ids = source.tokenize("def add(a, b):\n    return a + b\n")[:64]
        a, b = source.token_logits(ids), export.token_logits(ids)
        assert np.abs(a - b).max() < 0.05 * np.abs(a).max()
        assert (a.argmax(-1) == b.argmax(-1)).mean() > 0.9
    finally:
        source.close()
        export.close()


def test_a_failing_builder_falls_back_to_the_torchscript_int8_export(
    tiny_causal, tmp_path, monkeypatch
):
    from honed.quantize import onnx_genai

    def broken(float_dir: Path, out: Path) -> None:
        out.mkdir(parents=True)
        (out / "partial.onnx").write_text("half")
        raise HonedError("ONNX Runtime GenAI's model builder failed (some reason)")

    monkeypatch.setattr(onnx_genai, "run_builder", broken)
    meta = run(tiny_causal, "onnx-int8", tmp_path / "q")["method"]["onnx"]
    assert meta["exporter"].startswith("torch.onnx.export")
    assert "some reason" in meta["fallback"] and "dynamic int8 instead" in meta["fallback"]
    assert not (tmp_path / "q" / "_genai-build").exists()
    assert_loads_and_generates(tmp_path / "q", "onnxruntime")


@pytest.mark.parametrize("method", ["onnx", "onnx-int8", "int8"])
def test_text_to_text_models_export(tiny_seq2seq, tmp_path, method):
    manifest = run(tiny_seq2seq, method, tmp_path / method)
    assert manifest["task"] == "seq2seq"
    if method == "onnx-int8":  # the builder does not take T5: TorchScript + dynamic int8
        assert manifest["method"]["onnx"]["exporter"].startswith("torch.onnx.export")
    if method == "onnx":
        assert manifest["checks"]["kl"]["mean_kl"] < 1e-6
        assert manifest["checks"]["agreement"]["exact_match"] == 1.0
    assert_loads_and_generates(tmp_path / method, manifest["backend"])


@pytest.mark.parametrize("method", ["gguf-f16", "gguf-q8_0", "gguf-q4_k_m"])
def test_gguf_exports_keep_template_and_special_tokens(
    tiny_causal_real_tokenizer, tmp_path, method
):
    manifest = run(tiny_causal_real_tokenizer, method, tmp_path / method)
    special = manifest["checks"]["special_tokens"]
    assert special["chat_template_matches"] and special["eos_matches"]
    assert special["tokenization_matches"] and special["stop_tokens_missing"] == []
    assert len(list((tmp_path / method).glob("*.gguf"))) == 1
    if method == "gguf-f16":
        assert manifest["checks"]["kl"]["mean_kl"] < 0.01
    if method == "gguf-q4_k_m":  # llama.cpp's per-tensor log is kept, its fallbacks counted
        assert (tmp_path / method / "quantize.log").read_text()
        assert manifest["method"]["fallback_tensors"] > 0  # 64-wide rows do not fit K-quants
    assert_loads_and_generates(tmp_path / method, "llama.cpp")


def test_a_broken_eos_is_flagged(tiny_causal, tmp_path, monkeypatch):
    honest = methods.METHODS["int8"]

    def broken_export(src, work, cfg):
        details = honest.export(src, work, cfg)
        config = json.loads((work / "generation_config.json").read_text())
        config["eos_token_id"] = 5
        (work / "generation_config.json").write_text(json.dumps(config))
        tok = json.loads((work / "tokenizer_config.json").read_text())
        tok["eos_token"] = "<|user|>"
        (work / "tokenizer_config.json").write_text(json.dumps(tok))
        return details

    monkeypatch.setitem(methods.METHODS, "int8", methods.Method(
        "int8", honest.format, honest.backend, broken_export))  # fmt: skip
    warnings = run(tiny_causal, "int8", tmp_path / "broken")["checks"]["warnings"]
    assert any("EOS token changed" in w for w in warnings)
    assert any("stop tokens lost" in w for w in warnings)


def leaves_nothing(tmp_path: Path) -> bool:
    return not [
        p for p in tmp_path.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".honed-")
    ]


def test_an_already_quantized_artifact_is_refused(tiny_causal, tmp_path):
    run(tiny_causal, "int8", tmp_path / "q", check=False)
    with pytest.raises(HonedError, match="already quantized.*quantize its float parent"):
        run(tmp_path / "q", "nf4", tmp_path / "again")
    assert not (tmp_path / "again").exists() and leaves_nothing(tmp_path)


def test_a_gguf_export_is_refused_but_its_file_can_be_requantized(
    tiny_causal_real_tokenizer, tmp_path
):
    """An honed GGUF export names its float parent; the .gguf file itself is a source (as a
    shipped GGUF is: dequantized, with a note)."""
    run(tiny_causal_real_tokenizer, "gguf-q8_0", tmp_path / "g", check=False)
    with pytest.raises(HonedError, match=r"already quantized \(gguf-q8_0\).*float parent.*pass "):
        run(tmp_path / "g", "gguf-q4_k_m", tmp_path / "again")
    assert not (tmp_path / "again").exists() and leaves_nothing(tmp_path)
    (gguf,) = (tmp_path / "g").glob("*.gguf")
    assert "dequantized" in run(gguf, "gguf-q4_k_m", tmp_path / "again", check=False)["source_note"]


def test_gguf_of_a_text_to_text_model_is_refused(tiny_seq2seq, tmp_path):
    with pytest.raises(HonedError, match="does not support text-to-text.*use onnx"):
        run(tiny_seq2seq, "gguf-q4_k_m", tmp_path / "t5.gguf")
    assert leaves_nothing(tmp_path)


def test_not_enough_disk_is_refused_before_writing(tiny_causal, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(1, 1, 1))
    with pytest.raises(HonedError, match="not enough disk space"):
        run(tiny_causal, "int8", tmp_path / "full")
    assert leaves_nothing(tmp_path)


def test_an_architecture_the_converter_does_not_know(tiny_causal_real_tokenizer, tmp_path):
    odd = tmp_path / "odd"
    shutil.copytree(tiny_causal_real_tokenizer, odd)
    config = json.loads((odd / "config.json").read_text())
    config["architectures"] = ["MadeUpForCausalLM"]
    (odd / "config.json").write_text(json.dumps(config))
    with pytest.raises(HonedError, match="converter"):
        run(odd, "gguf-f16", tmp_path / "odd-gguf")
    assert leaves_nothing(tmp_path)


def test_cli_prints_the_checks_and_bad_methods_get_one_line(tiny_causal, tmp_path):
    runner = CliRunner()
    args = ["quantize", str(tiny_causal), "--method", "int8", "--check-prompts", "2"]
    result = runner.invoke(app, [*args, "--output", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert "greedy agreement" in result.output and "KL" in result.output
    bad = runner.invoke(app, ["quantize", str(tiny_causal), "--method", "int3"])
    assert bad.exit_code == 2 and "unknown quantization method 'int3'" in bad.output
    assert len(bad.output.strip().splitlines()) == 1
