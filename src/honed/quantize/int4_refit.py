"""int4-weight with float zero points: each group's 16 levels span exactly its min..max.

torchao's asymmetric int4 rounds each group's zero point to an integer, which shifts the whole
grid by up to half a step; the CPU kernel honed runs int4 with (tinygemm's layout) takes a
float zero per group anyway. So after torchao has quantized the model, every int4 weight is
refit from the float weights with scale = (max - min) / 15 and a float zero point, in the same
torchao tensor type (it dequantizes float zero points, and they survive save and load).
Weights that were already on such a grid (a model dequantized from llama.cpp's Q4_0/Q4_1,
like the shared SmolLM2 file) come back exactly.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def fit_int4(weight: torch.Tensor, group: int) -> tuple[torch.Tensor, ...]:
    """qdata int8 in [-8, 7], scale and float zero point per group: w ~ (q - zero) * scale."""
    g = weight.float().reshape(weight.shape[0], -1, group)
    lo, hi = g.amin(-1), g.amax(-1)
    scale = ((hi - lo) / 15).clamp(min=torch.finfo(torch.float32).tiny)
    zero = -8 - lo / scale
    q = (g / scale[..., None] + zero[..., None]).round().clamp(-8, 7).to(torch.int8)
    return q.reshape(weight.shape), scale, zero


def refit_float_zero_points(model: nn.Module, float_dir: Path) -> int:
    """Refit every torchao int4 linear of model from the float weights; returns how many.

    Each float weight is read from the safetensors files when its linear comes up, so the
    float model is never held in memory next to the quantized one."""
    from safetensors import safe_open

    files = [safe_open(str(p), framework="pt") for p in sorted(float_dir.glob("*.safetensors"))]
    where = {key: f for f in files for key in f.keys()}  # noqa: SIM118 (not a dict)
    done = 0
    for name, module in model.named_modules():
        w = getattr(module, "weight", None)
        source = where.get(f"{name}.weight")
        if type(w).__name__ != "IntxUnpackedToInt8Tensor" or source is None:
            continue
        weight = source.get_tensor(f"{name}.weight")
        w.qdata, w.scale, w.zero_point = fit_int4(weight, int(w.block_size[-1]))
        done += 1
    return done
