"""ONNX export with past key values (causal and T5-style text-to-text), plus ORT dynamic int8.

Optimum's ONNX exporter (optimum-onnx 0.1) requires transformers < 4.58, and honed runs on
transformers 5, so honed exports with `torch.onnx.export` itself, through small wrappers that
give the graphs the layout Optimum uses:

- causal: `decoder.onnx`: input_ids, attention_mask, past_key_values.{i}.key/value ->
  logits, present.{i}.key/value (past may have length 0: one graph for prefill and decode);
- text-to-text: `encoder.onnx` (input_ids, attention_mask -> encoder_hidden_states) and
  `decoder.onnx` (decoder_input_ids, encoder_hidden_states, encoder_attention_mask,
  past self-attention key/values -> logits, presents; cross-attention is recomputed from the
  encoder states at each step, which costs little for short inputs and keeps one graph).

`onnx-int8` of a decoder-only model the ONNX Runtime GenAI builder knows goes through it
instead (quantize/onnx_genai.py: fused attention, block-wise int8 weights); for the others
it applies ONNX Runtime's dynamic int8 quantization (per-channel weights) to each graph. The
layout is recorded in `onnx_meta.json` for the ONNX Runtime backend.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
from transformers import DynamicCache, EncoderDecoderCache

from honed.errors import HonedError
from honed.quantize.source import FloatSource

META = "onnx_meta.json"
OPSET = 17
COPY = ("config.json", "generation_config.json")


class CausalWrapper(torch.nn.Module):
    """input_ids, attention_mask, flat past -> logits, flat presents."""

    def __init__(self, model: torch.nn.Module, layers: int) -> None:
        super().__init__()
        self.model, self.layers = model, layers

    def forward(self, input_ids, attention_mask, *past):  # type: ignore[no-untyped-def]
        cache = _cache(self.model.config, past)
        seen = past[0].shape[2]
        positions = (torch.cumsum(attention_mask, -1) - 1).clamp(min=0)[:, seen:]
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
            past_key_values=cache, use_cache=True,
        )  # fmt: skip
        return (out.logits, *_flat(out.past_key_values))


class EncoderWrapper(torch.nn.Module):
    """input_ids, attention_mask -> encoder_hidden_states."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = model.get_encoder()

    def forward(self, input_ids, attention_mask):  # type: ignore[no-untyped-def]
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class Seq2SeqDecoderWrapper(torch.nn.Module):
    """decoder_input_ids, encoder states and mask, flat self-attention past -> logits, presents."""

    def __init__(self, model: torch.nn.Module, layers: int) -> None:
        super().__init__()
        self.model, self.layers = model, layers

    def forward(self, decoder_input_ids, encoder_hidden_states, encoder_attention_mask, *past):  # type: ignore[no-untyped-def]
        cache = EncoderDecoderCache(_cache(self.model.config, past), DynamicCache())
        out = self.model(
            encoder_outputs=(encoder_hidden_states,), attention_mask=encoder_attention_mask,
            decoder_input_ids=decoder_input_ids, past_key_values=cache, use_cache=True,
        )  # fmt: skip
        return (out.logits, *_flat(out.past_key_values.self_attention_cache))


def _cache(config: Any, past: tuple[torch.Tensor, ...]) -> DynamicCache:
    cache = DynamicCache(config=config)
    for i in range(len(past) // 2):
        cache.update(past[2 * i], past[2 * i + 1], i)
    return cache


def _flat(cache: DynamicCache) -> list[torch.Tensor]:
    return [t for layer in cache.layers for t in (layer.keys, layer.values)]


def kv_shape(model: torch.nn.Module, is_seq2seq: bool) -> tuple[int, int, int]:
    """(layers, kv heads, head dim), read from a real forward pass's cache."""
    ids = torch.tensor([[1, 2]])
    with torch.no_grad():
        if is_seq2seq:
            out = model(input_ids=ids, decoder_input_ids=ids, use_cache=True)
            cache = out.past_key_values.self_attention_cache
        else:
            cache = model(input_ids=ids, use_cache=True).past_key_values
    keys = cache.layers[0].keys
    return len(cache.layers), keys.shape[1], keys.shape[3]


def past_names(layers: int, prefix: str) -> list[str]:
    return [f"{prefix}.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]


def _export(module: torch.nn.Module, args: tuple, path: Path, names: tuple, axes: dict) -> None:
    """torch.onnx.export (TorchScript exporter: it traces the cache code without rewrites).

    The graph is saved as `NAME.onnx` with its weights in one `NAME.onnx.data` file, which
    works past protobuf's 2 GB limit and keeps the artifact's file list stable.
    """
    inputs, outputs = names
    scratch = path.parent / f"_{path.stem}-export"
    scratch.mkdir()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, str(scratch / path.name), input_names=inputs, output_names=outputs,
            dynamic_axes=axes, opset_version=OPSET, dynamo=False,
        )  # fmt: skip
    save_graph(onnx.load(str(scratch / path.name)), path)
    shutil.rmtree(scratch)


def save_graph(model: onnx.ModelProto, path: Path) -> None:
    """Save a graph with all its weights in NAME.onnx.data next to it."""
    onnx.save_model(
        model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
        location=path.name + ".data", size_threshold=0,
    )  # fmt: skip


def _export_causal(model: torch.nn.Module, work: Path, shape: tuple[int, int, int]) -> None:
    layers, heads, dim = shape
    past = [torch.zeros(1, heads, 3, dim) for _ in range(2 * layers)]
    ids, mask = torch.tensor([[1, 2, 3, 4]]), torch.ones(1, 7, dtype=torch.long)
    inputs = ["input_ids", "attention_mask", *past_names(layers, "past_key_values")]
    outputs = ["logits", *past_names(layers, "present")]
    axes = {"input_ids": {0: "batch", 1: "new"}, "attention_mask": {0: "batch", 1: "total"},
            "logits": {0: "batch", 1: "new"}}  # fmt: skip
    axes |= {n: {0: "batch", 2: "past"} for n in inputs[2:]}
    axes |= {n: {0: "batch", 2: "total"} for n in outputs[1:]}
    wrapper = CausalWrapper(model, layers)
    _export(wrapper, (ids, mask, *past), work / "decoder.onnx", (inputs, outputs), axes)


def _export_seq2seq(model: torch.nn.Module, work: Path, shape: tuple[int, int, int]) -> None:
    layers, heads, dim = shape
    ids, mask = torch.tensor([[1, 2, 3, 4]]), torch.ones(1, 4, dtype=torch.long)
    enc_axes = {"input_ids": {0: "batch", 1: "source"}, "attention_mask": {0: "batch", 1: "source"},
                "encoder_hidden_states": {0: "batch", 1: "source"}}  # fmt: skip
    names = (["input_ids", "attention_mask"], ["encoder_hidden_states"])
    _export(EncoderWrapper(model), (ids, mask), work / "encoder.onnx", names, enc_axes)
    with torch.no_grad():
        states = model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    past = [torch.zeros(1, heads, 3, dim) for _ in range(2 * layers)]
    inputs = ["decoder_input_ids", "encoder_hidden_states", "encoder_attention_mask",
              *past_names(layers, "past_key_values")]  # fmt: skip
    outputs = ["logits", *past_names(layers, "present")]
    axes = {"decoder_input_ids": {0: "batch", 1: "new"}, "logits": {0: "batch", 1: "new"},
            "encoder_hidden_states": {0: "batch", 1: "source"},
            "encoder_attention_mask": {0: "batch", 1: "source"}}  # fmt: skip
    axes |= {n: {0: "batch", 2: "past"} for n in inputs[3:]}
    axes |= {n: {0: "batch", 2: "total"} for n in outputs[1:]}
    wrapper = Seq2SeqDecoderWrapper(model, layers)
    args = (torch.tensor([[0, 5]]), states, mask, *past)
    _export(wrapper, args, work / "decoder.onnx", (inputs, outputs), axes)


def quantize_int8(path: Path) -> None:
    """Replace an ONNX graph with its ONNX Runtime dynamic int8 version (per-channel)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    scratch = path.parent / f"_{path.stem}-int8"
    scratch.mkdir()
    quantize_dynamic(
        path, scratch / path.name, weight_type=QuantType.QInt8, per_channel=True,
        use_external_data_format=True,
    )  # fmt: skip
    quantized = onnx.load(str(scratch / path.name))
    for old in path.parent.glob(path.name + "*"):  # the float graph and its weights
        old.unlink()
    save_graph(quantized, path)
    shutil.rmtree(scratch)


def export_onnx(src: FloatSource, work: Path, quantize_int8_weights: bool) -> dict[str, Any]:
    """Export src into work as ONNX graphs (+ int8), with tokenizer, config and layout.

    int8 of a decoder-only model the ONNX Runtime GenAI builder knows goes through it
    (quantize/onnx_genai.py); everything else through the TorchScript export below.
    """
    from transformers import AutoTokenizer

    from honed.quantize import onnx_genai

    layout: dict[str, Any] | None = None
    fallback = None
    if quantize_int8_weights and not src.is_seq2seq and onnx_genai.builds(src.float_dir):
        try:
            layout = onnx_genai.export_genai_int8(src.float_dir, work)
        except HonedError as exc:  # a model the builder should take but does not
            fallback = f"{exc}; exported with TorchScript and dynamic int8 instead"
    if layout is None:
        layout = _export_torchscript(src, work, quantize_int8_weights)
    if fallback:
        layout["fallback"] = fallback
    AutoTokenizer.from_pretrained(src.float_dir).save_pretrained(work)
    for name in COPY:
        if (src.float_dir / name).is_file():
            shutil.copy(src.float_dir / name, work / name)
    graphs = sorted(g.name for g in work.glob("*.onnx"))
    meta = {"task": "seq2seq" if src.is_seq2seq else "causal", **layout,
            "int8": quantize_int8_weights, "opset": _opset(work / "decoder.onnx"),
            "graphs": graphs}  # fmt: skip
    (work / META).write_text(json.dumps(meta, indent=2) + "\n")
    return {"onnx": meta}


def _export_torchscript(src: FloatSource, work: Path, int8: bool) -> dict[str, Any]:
    """torch.onnx.export of the float model (+ ORT dynamic int8, per-channel weights)."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    auto = AutoModelForSeq2SeqLM if src.is_seq2seq else AutoModelForCausalLM
    model = auto.from_pretrained(
        src.float_dir, dtype=torch.float32, attn_implementation="eager", use_safetensors=True
    ).eval()
    shape = kv_shape(model, src.is_seq2seq)
    (_export_seq2seq if src.is_seq2seq else _export_causal)(model, work, shape)
    if int8:
        for graph in sorted(work.glob("*.onnx")):
            quantize_int8(graph)
    weights = "dynamic int8 (per-channel weights, int8 activations)" if int8 else "fp32"
    return {"layers": shape[0], "kv_heads": shape[1], "head_dim": shape[2],
            "exporter": f"torch.onnx.export (TorchScript) {torch.__version__}",
            "weights": weights}  # fmt: skip


def _opset(graph: Path) -> int:
    """The default-domain opset of a graph (header only)."""
    model = onnx.load(str(graph), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), OPSET)
