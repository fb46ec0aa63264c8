"""The int8 embedding pass of the ONNX Runtime GenAI export: same rows as the fp32 lookup,
within int8 rounding, through ONNX Runtime's GatherBlockQuantized."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from honed.quantize.onnx_genai import builds, quantize_embedding


def _lookup_model(table: np.ndarray) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Gather", ["emb", "ids"], ["out"], name="lookup")], "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [None])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(table, "emb")],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=10)


def _run(model: onnx.ModelProto, ids: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"ids": ids})[0]


@pytest.mark.parametrize("width", [256, 192, 96])  # blocks of 128, 64 and 32
def test_quantized_lookup_matches_the_float_rows(width):
    rng = np.random.default_rng(0)
    table = rng.normal(size=(50, width)).astype(np.float32)
    table[3] = 0.0  # an all-zero row keeps a zero scale and stays zero
    model = _lookup_model(table)
    ids = np.array([0, 3, 49, 7], dtype=np.int64)
    assert quantize_embedding(model) == 1
    assert [n.op_type for n in model.graph.node] == ["GatherBlockQuantized"]
    got = _run(model, ids)
    block = next(b for b in (128, 64, 32) if width % b == 0)
    attributes = {a.name: a.i for a in model.graph.node[0].attribute}
    assert attributes["block_size"] == block and attributes["bits"] == 8
    scales = np.abs(table[ids].reshape(4, -1, block)).max(-1, keepdims=True) / 127
    err = np.abs(got - table[ids]).reshape(4, -1, block)
    assert np.all(err <= scales / 2 + 1e-6)  # round to nearest: at most half a step
    assert np.all(got[1] == 0)


def test_widths_no_block_divides_are_left_in_float():
    model = _lookup_model(np.ones((10, 40), np.float32))
    assert quantize_embedding(model) == 0
    assert model.graph.node[0].op_type == "Gather"


def test_builder_is_used_only_for_the_architectures_it_knows(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    assert builds(tmp_path)
    config.write_text(json.dumps({"architectures": ["T5ForConditionalGeneration"]}))
    assert not builds(tmp_path)
