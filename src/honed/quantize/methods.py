"""Quantization methods by name: each writes one variant of a float model into a directory.

- `int8`: torchao int8 weights (per channel), float activations; on a CPU honed runs these
  linears through aten's fused int8 kernel (runtime/packed_cpu.py), a quarter of fp32's bytes;
- `int8-dynamic`: torchao dynamic int8 activations and int8 weights (the successor of
  `torch.ao.quantization.quantize_dynamic`; slower than fp32 in eager mode on this CPU);
- `int4-weight`: torchao int4 weights in groups with a scale and a float zero point each
  (the 16 levels span each group's min..max, as in llama.cpp's Q4_1; quantize/int4_refit.py;
  stored unpacked in int8, the format torchao loads on any machine), float
  activations; on a CPU honed packs them at load time for aten's fused int4 kernel
  (runtime/packed_cpu.py);
- `nf4`: bitsandbytes 4-bit NF4 with double quantization;
- `gguf-TYPE`: llama.cpp's converter (f32, f16, bf16, q8_0 directly) and llama.cpp's quantizer
  for every other type it knows (q4_k_m, q5_k_m, q6_k, q4_0, ...);
- `onnx`, `onnx-int8`: see quantize/onnx_export.py and quantize/onnx_genai.py.

A method returns what the manifest should record about it.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from honed.config import QuantizeConfig
from honed.errors import HonedError
from honed.quantize.source import FloatSource

Exporter = Callable[[FloatSource, Path, QuantizeConfig], dict[str, Any]]
CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")


@dataclass(frozen=True)
class Method:
    """A quantization method: how it exports, and which backend loads the result."""

    name: str
    format: str
    backend: str
    export: Exporter
    seq2seq: bool = True
    backend_options: dict[str, Any] = field(default_factory=dict)


def _torch_export(
    qconfig: Callable[[QuantizeConfig], Any], refit: Callable[[Any, Path], int] | None = None
) -> Exporter:
    """An exporter that loads the float model with a transformers quantization config (and
    then refits its quantized weights from the float ones, when `refit` is given)."""

    def export(src: FloatSource, work: Path, cfg: QuantizeConfig) -> dict[str, Any]:
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        auto = AutoModelForSeq2SeqLM if src.is_seq2seq else AutoModelForCausalLM
        quant = qconfig(cfg)
        model = auto.from_pretrained(
            src.float_dir, quantization_config=quant, dtype=torch.float32, device_map="cpu",
            use_safetensors=True, trust_remote_code=cfg.trust_remote_code,
        )  # fmt: skip
        if refit is not None:
            refit(model, src.float_dir)
        model.save_pretrained(work)
        AutoTokenizer.from_pretrained(src.float_dir).save_pretrained(work)
        return {"quantization_config": quant.to_dict()}

    return export


def _torchao(kind: str) -> Callable[[QuantizeConfig], Any]:
    def build(cfg: QuantizeConfig) -> Any:
        import torch
        from torchao.quantization import (
            Int8DynamicActivationInt8WeightConfig,
            Int8WeightOnlyConfig,
            IntxWeightOnlyConfig,
        )
        from torchao.quantization.granularity import PerGroup
        from torchao.quantization.quant_primitives import MappingType
        from transformers import TorchAoConfig

        if kind == "int8":
            return TorchAoConfig(Int8WeightOnlyConfig())
        if kind == "int8-dynamic":
            return TorchAoConfig(Int8DynamicActivationInt8WeightConfig())
        return TorchAoConfig(  # a zero point per group: int4's 16 levels span the range
            IntxWeightOnlyConfig(
                weight_dtype=torch.int4,
                granularity=PerGroup(cfg.group_size),
                mapping_type=MappingType.ASYMMETRIC,
            )
        )

    return build


def _int4_export() -> Exporter:
    from honed.quantize.int4_refit import refit_float_zero_points

    return _torch_export(_torchao("int4"), refit_float_zero_points)


def _nf4(cfg: QuantizeConfig) -> Any:
    import torch

    from honed.models.load import bnb_4bit_config

    return bnb_4bit_config(torch.float32)


def _gguf_export(qtype: str) -> Exporter:
    def export(src: FloatSource, work: Path, cfg: QuantizeConfig) -> dict[str, Any]:
        from honed.quantize.gguf_tools import run_converter

        target = work / f"{Path(src.ref.rstrip('/')).stem or 'model'}-{qtype}.gguf"
        if qtype in CONVERTER_TYPES:
            run_converter(src.float_dir, target, qtype)
            return {"gguf_type": qtype, "converted_as": qtype}
        ftype = llama_ftype(qtype)
        middle = "bf16" if _config_dtype(src.float_dir) == "bfloat16" else "f16"
        intermediate = work / f"intermediate-{middle}.gguf"
        try:
            run_converter(src.float_dir, intermediate, middle)
            report = llama_quantize(intermediate, target, ftype, cfg.threads or 0)
        finally:
            intermediate.unlink(missing_ok=True)
        return {"gguf_type": qtype, "converted_as": middle, "quantized_by": "llama.cpp", **report}

    return export


def llama_ftype(qtype: str) -> int:
    """llama.cpp's file type constant for a quantization type name like q4_k_m."""
    import llama_cpp

    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{qtype.upper()}", None)
    if ftype is None:
        known = sorted(
            n.removeprefix("LLAMA_FTYPE_MOSTLY_").lower()
            for n in dir(llama_cpp)
            if n.startswith("LLAMA_FTYPE_MOSTLY_")
        )
        raise HonedError(f"llama.cpp has no quantization type '{qtype}': choose one of {known}")
    return int(ftype)


def llama_quantize(
    source: Path, target: Path, ftype: int, threads: int, keep_type: int | None = None
) -> dict[str, Any]:
    """Quantize a GGUF file with llama.cpp's own quantizer; returns what it reported.

    keep_type (a ggml type) stores the output and token embedding tensors in that type, as
    llama-quantize's --output-tensor-type and --token-embedding-type do.

    llama.cpp writes a line per tensor to the C stderr; honed keeps that log next to the
    artifact (`quantize.log`) and records how many tensors fell back to another type.
    """
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    if keep_type is not None:
        params.output_tensor_type = params.token_embedding_type = keep_type
    log = target.with_name("quantize.log")
    with captured_stderr(log):
        status = llama_cpp.llama_model_quantize(
            str(source).encode(), str(target).encode(), ctypes.byref(params)
        )
    if status != 0:
        raise HonedError(f"llama.cpp could not quantize {source.name} (status {status}): see {log}")
    fallback = re.search(r"(\d+) of (\d+) tensor\(s\) required fallback", log.read_text())
    return {"fallback_tensors": int(fallback.group(1)) if fallback else 0,
            "tensors": int(fallback.group(2)) if fallback else None}  # fmt: skip


@contextmanager
def captured_stderr(path: Path) -> Iterator[None]:
    """Send stderr into a file: file descriptor 2 (C code) and sys.stderr (llama-cpp-python's
    log callback prints there)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("w") as sink, redirect_stderr(sink):
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sink.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _config_dtype(path: Path) -> str | None:
    import json

    config = json.loads((path / "config.json").read_text())
    return config.get("dtype") or config.get("torch_dtype")


def _onnx(quantize_int8: bool) -> Exporter:
    def export(src: FloatSource, work: Path, cfg: QuantizeConfig) -> dict[str, Any]:
        from honed.quantize.onnx_export import export_onnx

        return export_onnx(src, work, quantize_int8_weights=quantize_int8)

    return export


GGUF_OPTIONS = {"n_ctx": 1024, "logits_all": True}
METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("int8", "hf-torchao", "transformers", _torch_export(_torchao("int8"))),
        Method(
            "int8-dynamic", "hf-torchao", "transformers", _torch_export(_torchao("int8-dynamic"))
        ),
        Method("int4-weight", "hf-torchao", "transformers", _int4_export()),
        Method("nf4", "hf-bitsandbytes", "transformers", _torch_export(_nf4)),
        Method("onnx", "onnx", "onnxruntime", _onnx(False)),
        Method("onnx-int8", "onnx", "onnxruntime", _onnx(True)),
    )
}


def method_for(name: str) -> Method:
    """The Method for a name (gguf-TYPE for any llama.cpp type), or a one-line error."""
    if name in METHODS:
        return METHODS[name]
    if name.startswith("gguf-") and (qtype := name.removeprefix("gguf-").lower()):
        if qtype not in CONVERTER_TYPES:
            llama_ftype(qtype)  # fails early for an unknown type
        return Method(name, "gguf", "llama.cpp", _gguf_export(qtype), False, GGUF_OPTIONS)
    raise HonedError(
        f"unknown quantization method '{name}': choose {', '.join(METHODS)}, gguf-f16, "
        "gguf-q8_0, gguf-q4_k_m or another llama.cpp type as gguf-TYPE"
    )
