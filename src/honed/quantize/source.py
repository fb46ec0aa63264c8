"""The float model a quantization starts from: any model reference, as a local HF directory.

Adapters are merged first (QLoRA adapters into the dequantized NF4 base, see models/merge.py),
GGUF files are dequantized once into the cache, hub ids are loaded and saved locally. A model
that is already quantized is refused: quantize its float parent instead.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from honed.artifacts import is_artifact, read_manifest
from honed.errors import HonedError
from honed.models.load import gguf_float_dir, load_model
from honed.models.resolve import ModelSource, resolve


@dataclass
class FloatSource:
    """A float model on disk, ready for any exporter."""

    ref: str
    source: ModelSource
    float_dir: Path
    is_seq2seq: bool
    note: str = ""

    def parent(self) -> dict[str, Any]:
        """The manifest's parent record."""
        path = self.source.path if self.source.kind in ("hf-dir", "adapter", "gguf") else None
        return {"ref": self.ref, "path": path, "source": self.source.describe()}

    def weights_bytes(self) -> int:
        """Bytes of the float weights (what an export is sized against)."""
        return sum(f.stat().st_size for f in self.float_dir.glob("*.safetensors"))


def refuse_quantized(source: ModelSource) -> None:
    """A one-line error for a model that is quantized already."""
    path = Path(source.path)
    # an honed artifact: a directory, or the directory a GGUF export's file was found in
    root = path if source.kind == "hf-dir" else path.parent if Path(source.ref).is_dir() else None
    if source.kind in ("hf-dir", "gguf") and root is not None and is_artifact(root):
        manifest = read_manifest(root)
        if manifest.get("kind") == "quantized":
            parent = manifest.get("parent", {}).get("ref", "its float parent")
            also = (
                f" (or pass {path} itself to start from that file's dequantized weights)"
                if source.kind == "gguf"
                else ""
            )
            raise HonedError(
                f"'{source.ref}' is already quantized ({manifest.get('config', {}).get('method')}):"
                f" quantize its float parent '{parent}' instead{also}"
            )
    config = path / "config.json"
    if source.kind == "hf-dir" and config.is_file():
        quant = json.loads(config.read_text()).get("quantization_config")
        if quant:
            method = quant.get("quant_method", "unknown")
            raise HonedError(
                f"'{source.ref}' is already quantized ({method}): quantize the float model instead"
            )


def prepare_source(ref: str, scratch: Path, trust_remote_code: bool = False) -> FloatSource:
    """Resolve ref into a local float HF directory (merging or downloading into scratch)."""
    source = resolve(ref)
    refuse_quantized(source)
    if source.kind == "gguf":
        float_dir = gguf_float_dir(source.path)
        note = "dequantized from a GGUF file: the export carries that file's quantization error"
        return FloatSource(ref, source, float_dir, _is_seq2seq(float_dir), note)
    if source.kind == "hf-dir":
        return FloatSource(ref, source, Path(source.path), _is_seq2seq(Path(source.path)))
    loaded = load_model(source, dtype="float32", trust_remote_code=trust_remote_code)
    target = scratch / "source"
    loaded.model.save_pretrained(target)
    _copy_tokenizer(loaded.weights_dir if source.kind == "hub" else source.path, target)
    note = "adapter merged into its base" if source.kind == "adapter" else ""
    return FloatSource(ref, source, target, loaded.is_seq2seq, note)


def _copy_tokenizer(origin: str, target: Path) -> None:
    """Save the tokenizer exactly as the model ships it (no pad token added)."""
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(origin).save_pretrained(target)
    for extra in ("generation_config.json",):
        if (Path(origin) / extra).is_file() and not (target / extra).is_file():
            shutil.copy(Path(origin) / extra, target / extra)


def _is_seq2seq(path: Path) -> bool:
    config = json.loads((path / "config.json").read_text())
    return bool(config.get("is_encoder_decoder"))
