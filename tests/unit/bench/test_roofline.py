"""Roofline arithmetic: bytes per token from file headers, bound and share."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from honed.bench.roofline import roofline, safetensors_tensor_bytes, weight_bytes_per_token


def test_bound_and_share():
    r = roofline(bandwidth_gbs=50.0, bytes_per_token=500_000_000, decode_tok_s=70.0)
    assert r["bound_tok_s"] == pytest.approx(100.0)
    assert r["share"] == pytest.approx(0.7)
    assert roofline(50.0, None, 10.0)["bytes_per_token"] is None


def test_untied_input_embedding_is_not_read_per_token(tmp_path):
    tensors = {
        "model.embed_tokens.weight": torch.zeros(100, 8),  # 3200 bytes, one row read
        "model.layers.0.mlp.up_proj.weight": torch.zeros(16, 8),  # 512 bytes
        "lm_head.weight": torch.zeros(100, 8),  # 3200 bytes, read in full
    }
    save_file(tensors, tmp_path / "model.safetensors")
    assert safetensors_tensor_bytes(tmp_path)["lm_head.weight"] == 3200
    assert weight_bytes_per_token(tmp_path) == 512 + 3200


def test_tied_embedding_is_read_once_as_the_output(tmp_path):
    tensors = {"model.embed_tokens.weight": torch.zeros(100, 8), "w.weight": torch.zeros(4, 8)}
    save_file(tensors, tmp_path / "model.safetensors")
    assert weight_bytes_per_token(tmp_path) == 3200 + 128


def test_torchao_unpacked_int4_weights_count_half_a_byte(tmp_path):
    import json

    tensors = {
        "model.layers.0.mlp.up_proj._weight_qdata": torch.zeros(16, 64, dtype=torch.int8),
        "model.layers.0.mlp.up_proj._weight_scale": torch.zeros(16, 2),  # 128 bytes
        "model.embed_tokens.weight": torch.zeros(10, 64),  # tied: read as the output
    }
    save_file(tensors, tmp_path / "model.safetensors")
    int8 = weight_bytes_per_token(tmp_path)
    quant = {"quant_method": "torchao", "quant_type": {"default": {"_data": {
        "intx_packing_format": {"_data": "UNPACKED_TO_INT8"},
        "weight_dtype": {"_data": "int4", "_type": "torch.dtype"}}}}}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps({"quantization_config": quant}))
    assert int8 == 1024 + 128 + 2560
    assert weight_bytes_per_token(tmp_path) == 512 + 128 + 2560


def _onnx_graph(path, tables: dict, nodes: list) -> None:
    """Save decoder.onnx with float initializers `tables` (name -> shape) and `nodes`."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.zeros(s, np.float32), n) for n, s in tables.items()]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits,
    )  # fmt: skip
    onnx.save(helper.make_model(graph), str(path / "decoder.onnx"))


def test_onnx_tables_only_looked_up_are_not_read_per_token(tmp_path):
    from onnx import helper

    # a tied embedding exported as a lookup table and a renamed copy for the output
    tables = {"model.embed_tokens.weight": (100, 8), "onnx::MatMul_7": (8, 100), "w": (8, 8)}
    nodes = [
        helper.make_node("Gather", ["model.embed_tokens.weight", "ids"], ["h"]),
        helper.make_node("MatMul", ["h", "w"], ["h2"]),
        helper.make_node("MatMul", ["h2", "onnx::MatMul_7"], ["out"]),
    ]
    _onnx_graph(tmp_path, tables, nodes)
    assert weight_bytes_per_token(tmp_path) == 3200 + 256


def test_onnx_table_also_multiplied_is_read_in_full(tmp_path):
    from onnx import helper

    nodes = [
        helper.make_node("Gather", ["emb", "ids"], ["h"]),
        helper.make_node("Transpose", ["emb"], ["embT"]),
        helper.make_node("MatMul", ["h", "embT"], ["out"]),
    ]
    _onnx_graph(tmp_path, {"emb": (100, 8)}, nodes)
    assert weight_bytes_per_token(tmp_path) == 3200
