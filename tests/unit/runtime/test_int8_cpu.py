"""torchao int8 weight-only linears swapped for aten's fused int8 kernel give the same output."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchao.quantization import (
    Int8DynamicActivationInt8WeightConfig,
    Int8WeightOnlyConfig,
    quantize_,
)

from honed.runtime.int8_cpu import Int8PackedLinear, pack_int8_linears


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 32, bias=False))


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
def test_packed_linears_match_torchao_output(dtype, tol):
    model = _model()
    quantize_(model, Int8WeightOnlyConfig())
    x = torch.randn(2, 5, 64)
    with torch.no_grad():
        expected = model(x)
        assert pack_int8_linears(model, compute_dtype=dtype) == 2
        got = model(x)
    assert isinstance(model[0], Int8PackedLinear) and model[0].qdata.dtype == torch.int8
    assert got.dtype == torch.float32  # the model's dtype, whatever the matmul ran in
    torch.testing.assert_close(got, expected, rtol=tol, atol=tol)


def test_dynamic_activation_and_float_linears_are_left_alone():
    model = _model()
    quantize_(model, Int8DynamicActivationInt8WeightConfig())
    assert pack_int8_linears(model) == 0
    assert pack_int8_linears(_model()) == 0
