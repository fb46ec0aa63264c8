"""int4 weights refit with float zero points: exact on a 4-bit grid, tighter than torchao's."""

from __future__ import annotations

import torch
from torch import nn
from torchao.quantization import IntxWeightOnlyConfig, quantize_
from torchao.quantization.granularity import PerGroup
from torchao.quantization.quant_primitives import MappingType

from honed.quantize.int4_refit import fit_int4, refit_float_zero_points
from honed.runtime.packed_cpu import Int4PackedLinear, pack_linears


def _grid_weight(rows: int = 8, cols: int = 64, group: int = 32) -> torch.Tensor:
    """A weight already on a Q4_1-style grid: per group, min + level * step, levels 0..15."""
    torch.manual_seed(0)
    levels = torch.randint(0, 16, (rows, cols // group, group)).float()
    levels[..., 0], levels[..., 1] = 0, 15  # each group spans all 16 levels
    step = torch.rand(rows, cols // group, 1) * 0.01 + 1e-3
    low = torch.randn(rows, cols // group, 1) * 0.05
    return (low + levels * step).reshape(rows, cols)


def _dequantize(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, group: int):
    expand = lambda t: t.repeat_interleave(group, dim=1)  # noqa: E731
    return (q.float() - expand(zero)) * expand(scale)


def test_a_weight_on_a_4bit_grid_comes_back_exactly():
    w = _grid_weight()
    q, scale, zero = fit_int4(w, 32)
    assert q.dtype == torch.int8 and int(q.min()) >= -8 and int(q.max()) <= 7
    torch.testing.assert_close(_dequantize(q, scale, zero, 32), w, rtol=0, atol=1e-6)


def test_refit_lowers_the_error_of_torchao_int4_and_runs_packed(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(64, 48, bias=False))
    original = model[0].weight.detach().clone()
    save_file({"0.weight": original}, tmp_path / "model.safetensors")
    quantize_(model, IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(32),
                                          mapping_type=MappingType.ASYMMETRIC))  # fmt: skip
    before = (model[0].weight.dequantize() - original).norm()
    assert refit_float_zero_points(model, tmp_path) == 1
    w = model[0].weight
    assert w.zero_point.is_floating_point()
    assert (w.dequantize() - original).norm() < before
    x = torch.randn(3, 64)
    with torch.no_grad():
        expected = model(x)
        assert pack_linears(model, compute_dtype=torch.float32) == 1
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)
    assert isinstance(model[0], Int4PackedLinear)
