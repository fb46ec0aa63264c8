"""Merge a LoRA adapter into float weights, exactly as it was trained.

A QLoRA adapter was trained against the NF4-dequantized base, not the original float base.
Merging it naively into 4-bit weights re-quantizes the sum and loses the adapter; merging into
the original float base mixes in the quantization error the adapter learned around. honed
loads the base in 4-bit, dequantizes each 4-bit layer to float, and merges the adapter there.
"""

from __future__ import annotations

import torch
from peft import PeftModel
from transformers import PreTrainedModel

from honed.models.load import load_model
from honed.models.resolve import ModelSource


def dequantized_base(source: ModelSource, dtype: str, trust_remote_code: bool) -> PreTrainedModel:
    """The float base with every NF4-quantized linear layer replaced by its dequantized weight."""
    import bitsandbytes as bnb

    fp = load_model(source, dtype=dtype, trust_remote_code=trust_remote_code).model
    q4 = load_model(source, dtype=dtype, load_in_4bit=True, trust_remote_code=trust_remote_code)
    float_modules = dict(fp.named_modules())
    with torch.no_grad():
        for name, module in q4.model.named_modules():
            if isinstance(module, bnb.nn.Linear4bit):
                weight = bnb.functional.dequantize_4bit(
                    module.weight.data, module.weight.quant_state
                )
                target = float_modules[name].weight
                target.copy_(weight.to(target.dtype).reshape(target.shape))
    return fp


def merge_adapter(
    base: ModelSource,
    adapter_dir: str,
    *,
    qlora: bool,
    dtype: str = "float32",
    trust_remote_code: bool = False,
) -> PreTrainedModel:
    """Return the base with the adapter merged in, in float."""
    if qlora:
        model = dequantized_base(base, dtype, trust_remote_code)
    else:
        model = load_model(base, dtype=dtype, trust_remote_code=trust_remote_code).model
    return PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
