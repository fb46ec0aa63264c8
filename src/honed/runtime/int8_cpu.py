"""torchao int8 weight-only linears run through aten's fused int8 kernel on CPU.

torchao 0.18's eager int8 weight-only linear casts the whole int8 weight to float on every
call, so on a CPU it reads more bytes than fp32 and decodes slower. `_weight_int8pack_mm`
multiplies activations by the int8 weight and its per-row scales in one pass, reading one
byte per weight. Its fast path takes bf16 activations (measured on an AVX512-BF16 CPU at one
token: 5x faster than an fp32 linear; with fp32 activations it is 3.5x slower), so where the
CPU has native bf16 the activations are rounded to bf16 for these matmuls and the output
returns in the model's dtype. When honed loads a torchao int8 artifact on a CPU, each such
linear is swapped for `Int8PackedLinear`; the artifact on disk stays torchao's.
"""

from __future__ import annotations

import torch
from torch import nn


class Int8PackedLinear(nn.Module):
    """y = x @ (qdata * scale).T + bias, with qdata int8 (N, K) and one scale per row."""

    def __init__(
        self,
        qdata: torch.Tensor,
        scale: torch.Tensor,
        bias: torch.Tensor | None,
        compute_dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.in_features, self.out_features = qdata.shape[1], qdata.shape[0]
        self.compute_dtype = compute_dtype
        self.register_buffer("qdata", qdata.contiguous())
        self.register_buffer("scale", scale.reshape(-1).to(compute_dtype).contiguous())
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)

    @property
    def weight(self) -> torch.Tensor:
        """The int8 weight, for model code that inspects `.weight` (its dtype says int8)."""
        return self.qdata

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(self.compute_dtype).contiguous()
        y = torch.ops.aten._weight_int8pack_mm(flat, self.qdata, self.scale).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


def _packable(weight: torch.Tensor) -> bool:
    """A torchao int8 weight-only tensor, symmetric, one scale per output row."""
    if type(weight).__name__ != "Int8Tensor":
        return False
    per_row = list(weight.block_size) == [1, weight.qdata.shape[-1]]
    plain = weight.act_quant_kwargs is None and weight.act_pre_scale is None
    zp = weight.zero_point
    symmetric = zp is None or not bool(zp.any())  # torchao stores zeros; its linear ignores them
    return per_row and plain and symmetric and weight.qdata.dim() == 2


def fast_compute_dtype() -> torch.dtype:
    """bf16 where the CPU computes it natively (the fused kernel's fast path), else fp32."""
    return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32


def pack_int8_linears(model: nn.Module, compute_dtype: torch.dtype | None = None) -> int:
    """Swap every packable torchao int8 linear on CPU for Int8PackedLinear; returns how many."""
    dtype = compute_dtype or fast_compute_dtype()
    swaps = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, nn.Linear)
        and child.weight.device.type == "cpu"
        and _packable(child.weight)
    ]
    for parent, name, child in swaps:
        w = child.weight
        setattr(parent, name, Int8PackedLinear(w.qdata, w.scale, child.bias, dtype))
    return len(swaps)
