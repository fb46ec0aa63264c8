"""The quantize stage: one method applied to one model, checked against it, as an artifact.

The artifact is built in `NAME.tmp/` and renamed into place only when the export and its
checks are done; any failure removes the work directory, so nothing half-written is left.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from honed import artifacts
from honed.config import QuantizeConfig
from honed.errors import HonedError
from honed.progress import status
from honed.quantize.checks import Thresholds, run_checks
from honed.quantize.methods import Method, method_for
from honed.quantize.source import FloatSource, prepare_source
from honed.runtime.base import load_backend

err = Console(stderr=True)


@dataclass
class QuantizeResult:
    """What the stage made."""

    output: Path
    manifest: dict[str, Any]


def default_output(cfg: QuantizeConfig) -> Path:
    """runs/<model>-<method>."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(cfg.model.rstrip("/")).name).strip("-")
    return Path("runs") / f"{name or 'model'}-{cfg.method}"


def check_disk(src: FloatSource, where: Path) -> None:
    """Refuse to start when the target disk cannot hold an export and its intermediate."""
    need = 2 * src.weights_bytes()
    free = shutil.disk_usage(where).free
    if free < need:
        raise HonedError(
            f"not enough disk space in '{where}': the export needs about {need / 1e9:.1f} GB, "
            f"{free / 1e9:.1f} GB are free; free some space or choose --output elsewhere"
        )


def quantize(cfg: QuantizeConfig) -> QuantizeResult:
    """Export cfg.model with cfg.method, check it, and publish the artifact."""
    method = method_for(cfg.method)
    final = cfg.output or default_output(cfg)
    work = artifacts.prepare_output(final, overwrite=cfg.overwrite, resume=False)
    try:
        with tempfile.TemporaryDirectory(prefix=".honed-", dir=work.parent) as scratch:
            manifest = _build(cfg, method, work, Path(scratch))
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    artifacts.publish(work, final)
    return QuantizeResult(final, manifest)


def _build(cfg: QuantizeConfig, method: Method, work: Path, scratch: Path) -> dict[str, Any]:
    with status(f"preparing {cfg.model}"):
        src = prepare_source(cfg.model, scratch, cfg.trust_remote_code)
    if src.is_seq2seq and not method.seq2seq:
        raise HonedError(
            f"{method.name} does not support text-to-text models like '{cfg.model}': "
            "use onnx, onnx-int8, int8, int4-weight or nf4"
        )
    check_disk(src, work.parent)
    for line in _notes(cfg):
        err.print(f"[bold yellow]honed: note[/] {line}", highlight=False)
    with status(f"quantizing with {method.name}"):
        details = method.export(src, work, cfg)
    if fallback := (details.get("onnx") or {}).get("fallback"):
        err.print(f"[bold yellow]honed: note[/] {fallback}", highlight=False)
    manifest = _manifest(cfg, method, src, details)
    artifacts.write_manifest(work, manifest)
    if cfg.check:
        manifest["checks"] = _checks(cfg, method, src, work)
        for line in manifest["checks"]["warnings"]:
            err.print(f"[bold red]honed: WARNING[/] {line}", highlight=False)
        manifest = artifacts.write_manifest(work, manifest)
    return manifest


def _notes(cfg: QuantizeConfig) -> list[str]:
    """What the user should know before a long export that runs but will be slow."""
    from honed.runtime.packed_cpu import INT4_GROUP_SIZES

    if cfg.method == "int4-weight" and cfg.group_size not in INT4_GROUP_SIZES:
        sizes = ", ".join(map(str, INT4_GROUP_SIZES))
        return [
            f"group size {cfg.group_size} has no fused int4 kernel on CPU ({sizes} do): on a "
            "CPU this variant runs torchao's own path, slower than fp32; pass --group-size 32"
        ]
    return []


def _manifest(
    cfg: QuantizeConfig, method: Method, src: FloatSource, details: dict[str, Any]
) -> dict[str, Any]:
    return {
        "kind": "quantized",
        "format": method.format,
        "stage": "quantize",
        "task": "seq2seq" if src.is_seq2seq else "causal",
        "backend": method.backend,
        "parent": src.parent(),
        "config": cfg.model_dump(mode="json"),
        "method": {"name": method.name, **details},
        "source_note": src.note,
    }


def _checks(cfg: QuantizeConfig, method: Method, src: FloatSource, work: Path) -> dict[str, Any]:
    """Load source and export side by side and compare them."""
    threads = {"n_threads": cfg.threads} if cfg.threads and method.backend == "llama.cpp" else {}
    with status("checking the export against its source"):
        source = load_backend(str(src.float_dir), backend="transformers", dtype="float32")
        try:
            export = load_backend(
                str(work), backend=method.backend, **method.backend_options, **threads
            )
            try:
                return run_checks(
                    source, export,
                    source_path=src.float_dir, export_path=work,
                    limits=Thresholds(cfg.min_agreement, cfg.max_kl, cfg.near_tie_nats),
                    n_prompts=cfg.check_prompts, max_new_tokens=cfg.check_max_new_tokens,
                )  # fmt: skip
            finally:
                export.close()
        finally:
            source.close()
