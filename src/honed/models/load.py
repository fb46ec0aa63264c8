"""Load a model and tokenizer from a ModelSource: causal or seq2seq, float or 4-bit NF4.

Weights load from safetensors (or GGUF, dequantized and cached as safetensors), never from
pickle; `trust_remote_code` stays off unless the caller turns it on.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from honed.errors import HonedError
from honed.models.gguf_digest import file_digest
from honed.models.resolve import ModelSource

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A model ready for a stage, with what the stage needs to know about it."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    is_seq2seq: bool
    source: ModelSource
    weights_dir: str


def pick_dtype(name: str) -> torch.dtype:
    """Map a config dtype name to torch; `auto` is bf16 on a CUDA GPU that supports it."""
    if name == "auto":
        cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def cpu_has_native_bf16() -> bool:
    """True where oneDNN computes bf16 natively on this CPU (AVX512-BF16 or AMX)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def check_bf16_speed(dtype: torch.dtype) -> None:
    """Warn (once) where bf16 would run on a CPU without native bf16: there every bf16 matmul
    converts its operands, many times slower than float32 (train_dtype_speed.py)."""
    if dtype == torch.bfloat16 and not torch.cuda.is_available() and not cpu_has_native_bf16():
        _warn_slow_bf16()


@functools.cache
def _warn_slow_bf16() -> None:
    log.warning(
        "bf16 on this CPU, which has no native bf16 (AVX512-BF16 or AMX), runs many times "
        "slower than float32: pass --dtype auto (float32 on a CPU; --teacher-dtype for a teacher)"
    )


def cache_root() -> Path:
    """Where honed keeps what it derives once (float copies of GGUF files, teacher logits)."""
    return Path(os.environ.get("HONED_CACHE", Path.home() / ".cache" / "honed"))


def gguf_float_dir(gguf_path: str) -> Path:
    """Dequantize a GGUF file once into a float safetensors directory and return it.

    The copy is named by the file's content digest, so a reinstalled or copied file reuses it.
    """
    src = Path(gguf_path)
    root = cache_root() / "gguf"
    target = root / f"{src.stem}-{file_digest(src, root)}"
    if (target / "config.json").is_file():
        return target
    log.info("dequantizing %s once into %s", src.name, target)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        loaded = AutoModelForCausalLM.from_pretrained(
            src.parent, gguf_file=src.name, dtype=torch.float32
        )
    except Exception as exc:  # transformers raises many types for an unsupported GGUF
        raise HonedError(f"cannot read GGUF '{src}': {exc}".splitlines()[0]) from exc
    # A GGUF-loaded model refuses save_pretrained: rebuild it from its config, then save.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the float copy is not GGUF-quantized any more
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), strict=False)
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(target)
    return target


def weights_dir(source: ModelSource) -> str:
    """The directory or hub id that from_pretrained should read for this source."""
    if source.kind == "gguf":
        return str(gguf_float_dir(source.path))
    if source.kind == "adapter":
        raise HonedError("internal: adapters are loaded through their base model")
    return source.path


@contextmanager
def _unreachable_as_error(path: str) -> Iterator[None]:
    """A model that cannot be found (a typo, or a hub id with no network) is one line."""
    try:
        yield
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HonedError(
            f"cannot load model '{path}' ({first}): check the hub id and your network, "
            "or pass a local directory or a .gguf file"
        ) from exc


def _config(path: str, trust_remote_code: bool) -> Any:
    with _unreachable_as_error(path):
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)


def bnb_4bit_config(compute_dtype: torch.dtype) -> BitsAndBytesConfig:
    """NF4 with double quantization: the QLoRA recipe."""
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def load_tokenizer(path: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """Load a tokenizer and make sure it can pad."""
    with _unreachable_as_error(path):
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    source: ModelSource,
    *,
    dtype: str = "auto",
    load_in_4bit: bool = False,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load weights for a source; adapters are merged into their float base."""
    if source.kind == "adapter":
        return _load_adapter_merged(source, dtype=dtype, trust_remote_code=trust_remote_code)
    path = weights_dir(source)
    config = _config(path, trust_remote_code)
    is_seq2seq = bool(getattr(config, "is_encoder_decoder", False))
    auto = AutoModelForSeq2SeqLM if is_seq2seq else AutoModelForCausalLM
    torch_dtype = pick_dtype(dtype)
    check_bf16_speed(torch_dtype)
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "trust_remote_code": trust_remote_code}
    if load_in_4bit:
        kwargs["quantization_config"] = bnb_4bit_config(torch_dtype)
    try:
        model = auto.from_pretrained(path, use_safetensors=True, **kwargs)
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0]
        raise HonedError(f"cannot load weights of '{source.ref}': {first}") from exc
    tokenizer = load_tokenizer(path, trust_remote_code)
    return LoadedModel(model, tokenizer, is_seq2seq, source, path)


def _load_adapter_merged(
    source: ModelSource, *, dtype: str, trust_remote_code: bool
) -> LoadedModel:
    from honed.artifacts import read_manifest
    from honed.models.merge import merge_adapter

    assert source.base is not None
    qlora = read_manifest(Path(source.path)).get("config", {}).get("method") == "qlora"
    merged = merge_adapter(
        source.base, source.path, qlora=qlora, dtype=dtype, trust_remote_code=trust_remote_code
    )
    tokenizer = load_tokenizer(source.path, trust_remote_code)
    is_seq2seq = bool(getattr(merged.config, "is_encoder_decoder", False))
    return LoadedModel(merged, tokenizer, is_seq2seq, source, weights_dir(source.base))
