"""Content keys for GGUF files, so a float copy is made once per file, not once per install.

The key is the file's SHA-256 (first 16 hex digits). Hashing a 1 GB file takes seconds, so
the digest is remembered in a small index keyed by path, size and modification time; a file
copied or reinstalled elsewhere is hashed once more and finds the same float copy.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

INDEX = "digests.json"


def file_digest(path: Path, index_dir: Path) -> str:
    """The file's SHA-256 prefix, from the index when path, size and mtime are unchanged."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    index = _read(index_dir / INDEX)
    if key in index:
        return index[key]
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()[:16]
    index = _read(index_dir / INDEX)  # another process may have added entries meanwhile
    index[key] = digest
    _write(index_dir / INDEX, index)
    return digest


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # a missing or damaged index only costs a hash
    return data if isinstance(data, dict) else {}


def _write(path: Path, index: dict[str, str]) -> None:
    """Replace the index atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(index, indent=1, sort_keys=True))
    tmp.replace(path)
