"""`onnx-int8` for decoder-only models through ONNX Runtime GenAI's model builder.

The builder writes the graph ONNX Runtime's own CPU path is tuned for: fused attention
(`GroupQueryAttention`, rotary embedding inside), fused RMSNorm + residual, and int8 weights in
blocks of 128 (`MatMulNBits`, symmetric, one scale a block) that run with int8 activations
(accuracy level 4, VNNI on CPUs that have it). The TorchScript export in onnx_export.py gives
the same model in about 5,000 small nodes, whose overhead per token is what held its decode
speed down; the builder's graph has about 12 nodes a layer.

The builder leaves the input embedding in fp32 (its quantizer packs Gather only to 4 bits), so
honed quantizes it the same way afterwards: uint8 in blocks (128, or the largest of 64 and 32
that divides the width) with one scale each, read
through `GatherBlockQuantized` (only the rows asked for are dequantized).

The builder runs in its own process (it prints a lot and holds the float model), reads the
float copy from disk, and never runs model code from the hub. Its graph keeps the layout of
honed's ONNX artifacts (input_ids, attention_mask, past_key_values.{i}.key/value -> logits,
present.{i}.key/value), so the ONNX Runtime backend runs either. Architectures it does not
build (T5, StarCoder2, GPT-2, ...) take the TorchScript export with dynamic int8 instead.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from honed.errors import HonedError

BLOCK = 128  # weights a scale; at 32 the scales add 12.5% to the bytes each token reads
# Decoder-only architectures the builder (onnxruntime-genai 0.18) exports as plain text models.
ARCHITECTURES = frozenset({
    "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
    "GemmaForCausalLM", "Gemma2ForCausalLM", "GraniteForCausalLM", "OlmoForCausalLM",
    "Phi3ForCausalLM", "PhiForCausalLM", "SmolLM3ForCausalLM", "NemotronForCausalLM",
})  # fmt: skip


def builder_version() -> str | None:
    """The installed onnxruntime-genai version, or None when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxruntime-genai")
    except PackageNotFoundError:
        return None


def builds(float_dir: Path) -> bool:
    """Whether the builder exports this model (a decoder-only architecture it knows)."""
    config = json.loads((float_dir / "config.json").read_text())
    return bool(set(config.get("architectures") or []) & ARCHITECTURES) and bool(builder_version())


def run_builder(float_dir: Path, out: Path) -> None:
    """Run the model builder (int8, CPU) on a float HF directory into out (its cache inside out,
    which the caller removes)."""
    log = out.parent / "genai-builder.log"
    command = [
        sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(float_dir),
        "-o", str(out), "-p", "int8", "-e", "cpu", "-c", str(out / "_cache"),
        "--extra_options", f"block_size={BLOCK}", "accuracy_level=4",
    ]  # fmt: skip
    with log.open("w") as sink:
        done = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0 or not (out / "model.onnx").is_file():
        tail = [line for line in log.read_text().splitlines() if line.strip()][-1:]
        raise HonedError(
            f"ONNX Runtime GenAI's model builder failed ({' '.join(tail)[:300]}); "
            f"see {log}, or use --method onnx for the float export"
        )


def quantize_embedding(model: onnx.ModelProto) -> int:
    """Replace fp32 embedding lookups (Gather on a 2-D initializer) with int8 block lookups.

    Symmetric uint8 around 128 in blocks along the hidden axis: w = (q - 128) * scale.
    Returns how many lookups were replaced.
    """
    inits = {i.name: i for i in model.graph.initializer}
    nodes, replaced = list(model.graph.node), 0
    for index, node in enumerate(nodes):
        table = inits.get(node.input[0]) if node.op_type == "Gather" else None
        block = _block_for(table.dims[1]) if table is not None and len(table.dims) == 2 else None
        if block is None:
            continue
        q, scales = _blockwise_uint8(numpy_helper.to_array(table), block)
        model.graph.initializer.remove(table)
        name = table.name
        model.graph.initializer.extend(
            [numpy_helper.from_array(q, name + "_Q8"), numpy_helper.from_array(scales, name + "_s")]
        )
        nodes[index] = helper.make_node(
            "GatherBlockQuantized", [name + "_Q8", node.input[1], name + "_s"],
            list(node.output), name=node.name, domain="com.microsoft",
            gather_axis=0, quantize_axis=1, block_size=block, bits=8,
        )  # fmt: skip
        replaced += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return replaced


def _block_for(width: int) -> int | None:
    return next((b for b in (BLOCK, 64, 32) if width % b == 0), None)


def _blockwise_uint8(weights: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = weights.shape
    blocks = weights.astype(np.float32).reshape(rows, cols // block, block)
    scales = np.abs(blocks).max(axis=2) / 127.0
    safe = np.where(scales == 0, 1.0, scales)[..., None]
    q = np.clip(np.rint(blocks / safe), -127, 127) + 128
    return q.astype(np.uint8).reshape(rows, cols), scales.astype(np.float32)


def export_genai_int8(float_dir: Path, work: Path) -> dict[str, Any]:
    """Build the int8 graph into work/decoder.onnx; returns the layout for onnx_meta.json."""
    from honed.quantize.onnx_export import save_graph

    built = work / "_genai-build"
    try:
        run_builder(float_dir, built)
        model = onnx.load(str(built / "model.onnx"))
        embeddings = quantize_embedding(model)
        save_graph(model, work / "decoder.onnx")
        del model
        decoder = json.loads((built / "genai_config.json").read_text())["model"]["decoder"]
    finally:
        shutil.rmtree(built, ignore_errors=True)
    return {
        "layers": decoder["num_hidden_layers"], "kv_heads": decoder["num_key_value_heads"],
        "head_dim": decoder["head_size"], "exporter": f"onnxruntime-genai {builder_version()}",
        "weights": f"MatMulNBits int8, blocks of {BLOCK}, int8 activations (accuracy level 4)",
        "quantized_embeddings": embeddings,
    }  # fmt: skip
