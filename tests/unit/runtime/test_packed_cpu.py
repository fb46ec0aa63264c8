"""torchao weight-only linears swapped for aten's fused int8/int4 kernels give the same output."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchao.quantization import (
    Int8DynamicActivationInt8WeightConfig,
    Int8DynamicActivationIntxWeightConfig,
    Int8WeightOnlyConfig,
    IntxWeightOnlyConfig,
    quantize_,
)
from torchao.quantization.granularity import PerGroup
from torchao.quantization.quant_primitives import MappingType

from honed.runtime.packed_cpu import (
    Int4PackedLinear,
    Int8PackedLinear,
    fast_4bit_compute,
    pack_linears,
)

TOLERANCES = [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)]


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 32, bias=False))


def _int4(group: int = 32, mapping: MappingType = MappingType.SYMMETRIC) -> IntxWeightOnlyConfig:
    return IntxWeightOnlyConfig(
        weight_dtype=torch.int4, granularity=PerGroup(group), mapping_type=mapping
    )


def _swap_and_compare(model: nn.Module, dtype: torch.dtype, tol: float) -> nn.Module:
    x = torch.randn(2, 5, 64)
    with torch.no_grad():
        expected = model(x)
        assert pack_linears(model, compute_dtype=dtype) == 2
        got = model(x)
    assert got.dtype == torch.float32  # the model's dtype, whatever the matmul ran in
    torch.testing.assert_close(got, expected, rtol=tol, atol=tol)
    return model


@pytest.mark.parametrize("dtype, tol", TOLERANCES)
def test_int8_packed_linears_match_torchao_output(dtype, tol):
    model = _model()
    quantize_(model, Int8WeightOnlyConfig())
    _swap_and_compare(model, dtype, tol)
    assert isinstance(model[0], Int8PackedLinear) and model[0].qdata.dtype == torch.int8


@pytest.mark.parametrize("dtype, tol", TOLERANCES)
@pytest.mark.parametrize("mapping", [MappingType.SYMMETRIC, MappingType.ASYMMETRIC])
def test_int4_packed_linears_match_torchao_output(dtype, tol, mapping):
    model = _model()
    quantize_(model, _int4(mapping=mapping))
    if mapping == MappingType.ASYMMETRIC:  # the zero points must take part in the sum
        assert bool(model[0].weight.zero_point.any())
    _swap_and_compare(model, dtype, tol)
    assert isinstance(model[0], Int4PackedLinear) and model[0].group_size == 32


def test_unsupported_kinds_and_float_linears_are_left_alone():
    dynamic = _model()
    quantize_(dynamic, Int8DynamicActivationInt8WeightConfig())
    odd_groups = _model()
    quantize_(odd_groups, _int4(group=16))  # not a group size the CPU int4 kernel takes
    dynamic_int4 = _model()  # int4 weights with int8 activations: not weight-only
    quantize_(dynamic_int4, Int8DynamicActivationIntxWeightConfig(
        weight_dtype=torch.int4, weight_granularity=PerGroup(32)))  # fmt: skip
    for model in (dynamic, odd_groups, dynamic_int4, _model()):
        assert pack_linears(model) == 0


def test_nf4_linears_compute_in_the_dtype_asked_for():
    bnb = pytest.importorskip("bitsandbytes")
    torch.manual_seed(0)
    dense = nn.Linear(64, 32, bias=False)
    nf4 = bnb.nn.Linear4bit(64, 32, bias=False, compute_dtype=torch.float32, quant_type="nf4")
    nf4.weight = bnb.nn.Params4bit(dense.weight.data.clone(), requires_grad=False, quant_type="nf4")
    model = nn.Sequential(nf4.to("cpu"))
    x = torch.randn(3, 64)
    with torch.no_grad():
        expected = model(x)
        assert fast_4bit_compute(model, torch.bfloat16) == 1
        got = model(x)
    assert model[0].compute_dtype == torch.bfloat16 and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=3e-2, atol=3e-2)
    assert fast_4bit_compute(_model()) == 0
