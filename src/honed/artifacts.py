"""Artifact directories: model files plus `manifest.json`, written atomically.

An artifact is built in `NAME.tmp/` and renamed to `NAME/` only when complete, so a crash or
Ctrl-C never leaves a half-written artifact under the final name. The manifest records kind,
format, parent, the stage config, seed, library versions and the sha256 of every file;
lineage is the chain of parents.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

from honed.errors import HonedError

MANIFEST = "manifest.json"
TRACKED_LIBRARIES = (
    "honed", "torch", "transformers", "trl", "peft", "accelerate", "datasets",
    "bitsandbytes", "gguf", "safetensors", "tokenizers",
)  # fmt: skip
# Sub-folders that are working state, not part of the artifact's content.
UNHASHED_DIRS = ("checkpoints", "tensorboard", "wandb", ".staging")


def library_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Installed versions of the libraries that shape an artifact (and Python itself)."""
    versions = {"python": platform.python_version()}
    for name in (*TRACKED_LIBRARIES, *extra):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under root (relative paths), skipping the manifest and work dirs."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or rel.as_posix() == MANIFEST or rel.parts[0] in UNHASHED_DIRS:
            continue
        if any(part in UNHASHED_DIRS for part in rel.parts[:-1]):
            continue
        out[rel.as_posix()] = sha256_file(path)
    return out


def is_artifact(path: Path) -> bool:
    """True when path is a directory holding an honed manifest."""
    return (path / MANIFEST).is_file()


def read_manifest(path: Path) -> dict[str, Any]:
    """Load an artifact's manifest; a broken one is a HonedError."""
    try:
        return json.loads((path / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise HonedError(f"artifact '{path}' has an unreadable {MANIFEST}: re-create it") from exc


def lineage(path: Path) -> list[dict[str, Any]]:
    """Manifests from this artifact back through its parents that are artifacts on disk."""
    chain: list[dict[str, Any]] = []
    current: Path | None = path
    while current is not None and is_artifact(current) and len(chain) < 64:
        manifest = read_manifest(current)
        chain.append(manifest)
        parent = manifest.get("parent", {}).get("path")
        current = Path(parent) if parent else None
    return chain


def tmp_dir_for(final: Path) -> Path:
    """The working directory where an artifact is built before it is renamed into place."""
    return final.with_name(final.name + ".tmp")


def prepare_output(final: Path, *, overwrite: bool, resume: bool) -> Path:
    """Check the target and return the work directory to build the artifact in.

    Refuses to touch an existing artifact unless `overwrite`; keeps an interrupted run's
    work directory for `resume` and refuses to silently discard it otherwise.
    """
    work = tmp_dir_for(final)
    if final.exists() and not overwrite:
        raise HonedError(
            f"output '{final}' already exists: pass --overwrite to replace it or choose --output"
        )
    if resume:
        if not work.is_dir():
            raise HonedError(f"nothing to resume: '{work}' does not exist; run without --resume")
        return work
    if work.exists():
        if not overwrite:
            raise HonedError(
                f"an interrupted run is in '{work}': pass --resume to continue it "
                "or --overwrite to start over"
            )
        shutil.rmtree(work)
    work.mkdir(parents=True)
    return work


def write_manifest(work: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Fill in versions, time and file hashes, and write manifest.json into the work dir."""
    full = {
        "honed_manifest": 1,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        **manifest,
        "files": file_hashes(work),
    }
    (work / MANIFEST).write_text(json.dumps(full, indent=2, default=str) + "\n")
    return full


def publish(work: Path, final: Path) -> None:
    """Atomically move a finished work dir to its final name, replacing an old artifact."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    work.rename(final)
    if old.exists():
        shutil.rmtree(old)
