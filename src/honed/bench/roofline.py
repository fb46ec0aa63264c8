"""The decode roofline: weight bytes read per generated token, and the speed that allows.

Generating one token with batch 1 reads every weight matrix once; the input embedding is an
exception (one row is looked up), unless it is tied to the output projection, which reads all
of it. So bytes per token = all weight bytes - the untied input embedding (in ONNX graphs:
every table that only Gather nodes read), and the upper bound
on decode speed is memory bandwidth / bytes per token. Weight sizes come from the files'
headers (GGUF tensor table, safetensors header, ONNX initializers), as stored (quantized),
except torchao int4 weights: stored unpacked, a byte a weight, but packed two to a byte when
honed runs them on a CPU (runtime/packed_cpu.py), so they count half.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

EMBEDDING_NAMES = ("token_embd.weight", "embed_tokens.weight", "wte.weight", "shared.weight")


def _is_embedding(name: str) -> bool:
    return name.endswith(EMBEDDING_NAMES) or name == "shared.weight"


def _per_token(sizes: dict[str, int], output_names: tuple[str, ...]) -> int:
    """All bytes minus the input embedding when a separate output matrix exists."""
    has_output = any(n.endswith(output_names) for n in sizes)
    return sum(b for n, b in sizes.items() if not (has_output and _is_embedding(n)))


def gguf_tensor_bytes(path: Path) -> dict[str, int]:
    """Bytes of every tensor in a GGUF file, as stored."""
    from gguf import GGUFReader

    return {t.name: int(t.n_bytes) for t in GGUFReader(str(path)).tensors}


def safetensors_tensor_bytes(directory: Path) -> dict[str, int]:
    """Bytes of every tensor in the safetensors files of a directory (header only), torchao's
    unpacked int4 weights at half a byte a weight."""
    halve = _unpacked_int4(directory)
    return {
        n: (info["data_offsets"][1] - info["data_offsets"][0])
        // (2 if halve and n.endswith("_weight_qdata") else 1)
        for n, info in _safetensors_headers(directory)
    }


def _unpacked_int4(directory: Path) -> bool:
    """Whether the model holds torchao int4 weights stored one per byte."""
    config = directory / "config.json"
    if not config.is_file():
        return False
    quant = json.dumps(json.loads(config.read_text()).get("quantization_config") or {})
    return (
        '"quant_method": "torchao"' in quant
        and '"UNPACKED_TO_INT8"' in quant
        and ('"_data": "int4"' in quant)
    )


def onnx_bytes_per_token(directory: Path) -> int:
    """Initializer bytes of the decoder graph, less the tables only looked up (Gather: one row
    a token). Exporters rename and copy weights (a tied embedding becomes a lookup table and a
    separate output matrix), so what an initializer feeds decides, not its name."""
    import onnx

    graph = onnx.load(str(directory / "decoder.onnx"), load_external_data=False).graph
    consumers: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    lookups = {"Gather", "GatherBlockQuantized"}
    return sum(
        _initializer_bytes(init)
        for init in graph.initializer
        if consumers.get(init.name, set()) - lookups
    )


def _initializer_bytes(init: Any) -> int:
    """An initializer's size as stored: its external-data length, or its inline bytes."""
    length = next((int(e.value) for e in init.external_data if e.key == "length"), None)
    return length if length is not None else len(init.raw_data)


def weight_bytes_per_token(model_path: Path) -> int | None:
    """Bytes of weights read to generate one token (None when the format is unknown)."""
    if model_path.suffix == ".gguf":
        return _per_token(gguf_tensor_bytes(model_path), ("output.weight",))
    if (model_path / "decoder.onnx").is_file():
        return onnx_bytes_per_token(model_path)
    sizes = safetensors_tensor_bytes(model_path) if model_path.is_dir() else {}
    return _per_token(sizes, ("lm_head.weight",)) if sizes else None


def parameter_count(model_path: Path) -> int | None:
    """Weights in the model's files (elements, from the headers); None for unknown formats.

    An int4 ONNX or torchao matrix may be stored packed; GGUF and safetensors shapes are the
    logical ones.
    """
    if model_path.suffix == ".gguf":
        from gguf import GGUFReader

        return sum(int(t.n_elements) for t in GGUFReader(str(model_path)).tensors)
    if (model_path / "decoder.onnx").is_file():
        import onnx

        graph = onnx.load(str(model_path / "decoder.onnx"), load_external_data=False).graph
        return sum(_product(init.dims) for init in graph.initializer)
    shapes = _safetensors_shapes(model_path) if model_path.is_dir() else {}
    return sum(_product(shape) for shape in shapes.values()) if shapes else None


def _product(dims: list[int]) -> int:
    out = 1
    for d in dims:
        out *= int(d)
    return out


def _safetensors_shapes(directory: Path) -> dict[str, list[int]]:
    return {name: info["shape"] for name, info in _safetensors_headers(directory)}


def _safetensors_headers(directory: Path) -> list[tuple[str, dict]]:
    entries = []
    for file in sorted(directory.glob("*.safetensors")):
        with file.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        entries += [(n, info) for n, info in header.items() if n != "__metadata__"]
    return entries


def roofline(bandwidth_gbs: float, bytes_per_token: int | None, decode_tok_s: float) -> dict:
    """Upper bound on decode tokens/s and the share of it reached."""
    if not bytes_per_token:
        return {"bandwidth_gbs": bandwidth_gbs, "bytes_per_token": None}
    bound = bandwidth_gbs * 1e9 / bytes_per_token
    return {
        "bandwidth_gbs": bandwidth_gbs,
        "bytes_per_token": bytes_per_token,
        "bound_tok_s": bound,
        "share": decode_tok_s / bound,
    }
