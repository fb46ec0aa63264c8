"""torchao weight-only linears (int8 and int4) run through aten's fused kernels on CPU.

torchao 0.18's eager weight-only linears dequantize the whole weight to float on every call
(`Int8Tensor`; `IntxUnpackedToInt8Tensor` for int4), so on a CPU they read more bytes than
fp32 and decode slower (measured: int4-weight at 0.5x fp32 eager). aten has fused kernels
that multiply activations by the quantized weight in one pass:

- `_weight_int8pack_mm`: int8 weight, one scale per output row;
- `_weight_int4pack_mm_for_cpu`: int4 weight packed two per byte, a scale and a zero per
  group of input columns (tinygemm's layout: w = (q - 8) * scale + zero).

Both are fast with bf16 activations only (measured on an AVX512-BF16 CPU at one token, a
4864x896 matmul: int8 5x and int4 ~5x faster than an fp32 linear; with fp32 activations both
are several times slower than fp32), so where the CPU has native bf16 the activations are
rounded to bf16 for these matmuls and the output returns in the model's dtype. When honed
loads a torchao artifact on a CPU, each such linear is swapped for `Int8PackedLinear` or
`Int4PackedLinear`; the artifact on disk stays torchao's.

bitsandbytes NF4 linears have no such kernel here (bitsandbytes fetches its fast CPU kernel
from the Hugging Face hub), but they dequantize to their compute dtype and multiply there:
in bf16 that runs 4x faster than in fp32 on the same CPU, so their compute dtype is set the
same way (`fast_4bit_compute`).
"""

from __future__ import annotations

import torch
from torch import nn

from honed.models.load import cpu_has_native_bf16

INT4_GROUP_SIZES = (32, 64, 128, 256)  # what the CPU int4 kernel accepts


class _PackedLinear(nn.Module):
    """Shared shape, bias and dtype handling; subclasses compute `_matmul(flat)`."""

    def __init__(self, qdata: torch.Tensor, bias: torch.Tensor | None, compute_dtype: torch.dtype):
        super().__init__()
        self.in_features, self.out_features = qdata.shape[1], qdata.shape[0]
        self.compute_dtype = compute_dtype
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)

    @property
    def weight(self) -> torch.Tensor:
        """The quantized weight, for model code that inspects `.weight` (its dtype says so)."""
        return self.qdata

    def _matmul(self, flat: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(self.compute_dtype).contiguous()
        y = self._matmul(flat).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


class Int8PackedLinear(_PackedLinear):
    """y = x @ (qdata * scale).T + bias, with qdata int8 (N, K) and one scale per row."""

    def __init__(
        self,
        qdata: torch.Tensor,
        scale: torch.Tensor,
        bias: torch.Tensor | None,
        compute_dtype: torch.dtype = torch.float32,
    ):
        super().__init__(qdata, bias, compute_dtype)
        self.register_buffer("qdata", qdata.contiguous())
        self.register_buffer("scale", scale.reshape(-1).to(compute_dtype).contiguous())

    def _matmul(self, flat: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int8pack_mm(flat, self.qdata, self.scale)


class Int4PackedLinear(_PackedLinear):
    """y = x @ ((q - zero_point) * scale).T + bias, q int4 in groups of `group_size` columns."""

    def __init__(
        self,
        qdata: torch.Tensor,
        scale: torch.Tensor,
        zero_point: torch.Tensor,
        group_size: int,
        bias: torch.Tensor | None,
        compute_dtype: torch.dtype = torch.float32,
    ):
        super().__init__(qdata, bias, compute_dtype)
        self.group_size = group_size
        unsigned = (qdata.to(torch.int32) + 8).contiguous()  # [-8, 7] -> tinygemm's [0, 15]
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(unsigned, 1)
        self.register_buffer("qdata", packed)
        zero = -zero_point.to(torch.float32) * scale.to(torch.float32)  # (q - 8) * s + zero
        pairs = torch.stack([scale.to(torch.float32), zero], dim=-1)  # (N, groups, 2)
        self.register_buffer("scale_and_zero", pairs.transpose(0, 1).to(compute_dtype).contiguous())

    def _matmul(self, flat: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int4pack_mm_for_cpu(
            flat, self.qdata, self.group_size, self.scale_and_zero
        )


def _plain(weight: torch.Tensor) -> bool:
    """No activation quantization or pre-scaling: a weight-only tensor (torchao names the
    activation settings `act_quant_kwargs` on int8 tensors, `activation_quantization` on intx)."""
    names = ("act_quant_kwargs", "activation_quantization", "act_pre_scale")
    return all(getattr(weight, name, None) is None for name in names)


def _int8_packable(weight: torch.Tensor) -> bool:
    """A torchao int8 weight-only tensor, symmetric, one scale per output row."""
    if type(weight).__name__ != "Int8Tensor" or weight.qdata.dim() != 2:
        return False
    per_row = list(weight.block_size) == [1, weight.qdata.shape[-1]]
    zp = weight.zero_point
    symmetric = zp is None or not bool(zp.any())  # torchao stores zeros; its linear ignores them
    return per_row and symmetric and _plain(weight)


def _int4_packable(weight: torch.Tensor) -> bool:
    """A torchao int4 weight-only tensor in groups along the input dimension."""
    if type(weight).__name__ != "IntxUnpackedToInt8Tensor" or weight.qdata.dim() != 2:
        return False
    block = list(weight.block_size)
    in_features = weight.qdata.shape[1]
    grouped = block[0] == 1 and block[1] in INT4_GROUP_SIZES and in_features % block[1] == 0
    has_zeros = weight.zero_point is not None  # integer or float: zero = -zero_point * scale
    return weight.target_dtype == torch.int4 and grouped and has_zeros and _plain(weight)


def _packed(linear: nn.Linear, dtype: torch.dtype) -> nn.Module | None:
    """The fused replacement for a torchao linear on CPU, or None to leave it as it is."""
    w = linear.weight
    if w.device.type != "cpu":
        return None
    if _int8_packable(w):
        return Int8PackedLinear(w.qdata, w.scale, linear.bias, dtype)
    if _int4_packable(w):
        group = int(w.block_size[1])
        return Int4PackedLinear(w.qdata, w.scale, w.zero_point, group, linear.bias, dtype)
    return None


def fast_compute_dtype() -> torch.dtype:
    """bf16 where the CPU computes it natively (the fused kernels' fast path), else fp32."""
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def pack_linears(model: nn.Module, compute_dtype: torch.dtype | None = None) -> int:
    """Swap every packable torchao int8/int4 linear on CPU for a fused one; returns how many."""
    dtype = compute_dtype or fast_compute_dtype()
    swaps = [
        (parent, name, replacement)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, nn.Linear) and (replacement := _packed(child, dtype)) is not None
    ]
    for parent, name, replacement in swaps:
        setattr(parent, name, replacement)
    return len(swaps)


def fast_4bit_compute(model: nn.Module, compute_dtype: torch.dtype | None = None) -> int:
    """Set the compute dtype of every bitsandbytes 4-bit linear on CPU; returns how many."""
    dtype = compute_dtype or fast_compute_dtype()
    linears = [
        m
        for m in model.modules()
        if type(m).__name__ == "Linear4bit" and m.weight.device.type == "cpu"
    ]
    for m in linears:
        m.compute_dtype, m.compute_type_is_set = dtype, True
    return len(linears)


def use_fast_cpu_kernels(model: nn.Module) -> int:
    """Every quantized linear above onto its fast CPU path; returns how many changed."""
    return pack_linears(model) + fast_4bit_compute(model)
