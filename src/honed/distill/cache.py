"""The teacher's top-k next-token logits, computed once per training sequence and kept on disk.

One safetensors file per distinct sequence (named by a hash of its token ids) holds the
teacher's k best token ids and their logits at every position. `meta.json` names the teacher
by the sha256 of its weights and k; a cache made by another teacher (or another k) is
detected and rebuilt. Later epochs and reruns read the cache instead of running the teacher.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)
META = "meta.json"


def sequence_key(ids: list[int]) -> str:
    """The cache file name of a token sequence."""
    return hashlib.sha1(torch.tensor(ids, dtype=torch.int64).numpy().tobytes()).hexdigest()


class TeacherCache:
    """Top-k teacher logits by sequence, for one teacher fingerprint and one k."""

    def __init__(self, root: Path, fingerprint: str, k: int) -> None:
        self.root = root
        self.k = k
        self.hits = 0
        self.misses = 0
        self.filled = 0  # sequences the teacher ran on before training (KDState.warm)
        self.rebuilt = False
        meta = {"teacher_sha256": fingerprint, "top_k": k}
        found = self._read_meta()
        if found is not None and found != meta:
            log.warning(
                "the teacher cache at %s was made by another teacher or top_k (%s); rebuilding it",
                root,
                found,
            )
            shutil.rmtree(root)
            self.rebuilt = True
        root.mkdir(parents=True, exist_ok=True)
        (root / META).write_text(json.dumps(meta))
        self.fingerprint = fingerprint

    def _read_meta(self) -> dict | None:
        try:
            return json.loads((self.root / META).read_text())
        except (OSError, json.JSONDecodeError):
            return None if not self.root.exists() or not any(self.root.iterdir()) else {}

    def has(self, ids: list[int]) -> bool:
        """Whether the sequence is cached (not counted as a hit or a miss)."""
        return (self.root / f"{sequence_key(ids)}.safetensors").is_file()

    def get(self, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(top ids [len, k], top logits [len, k]) for the sequence, or None."""
        path = self.root / f"{sequence_key(ids)}.safetensors"
        if not path.is_file():
            self.misses += 1
            return None
        self.hits += 1
        tensors = load_file(path)
        return tensors["ids"].long(), tensors["logits"].float()

    def put(self, ids: list[int], top_ids: torch.Tensor, top_logits: torch.Tensor) -> None:
        """Store one sequence's top-k (written to a temporary name, then renamed)."""
        path = self.root / f"{sequence_key(ids)}.safetensors"
        tmp = path.with_suffix(".tmp")
        save_file(
            {
                "ids": top_ids.to(torch.int32).contiguous().cpu(),
                "logits": top_logits.to(torch.float16).contiguous().cpu(),
            },
            str(tmp),
        )
        tmp.rename(path)

    def stats(self) -> dict[str, object]:
        """For the manifest: where, which teacher, and how often the teacher was spared."""
        return {
            "path": str(self.root),
            "teacher_sha256": self.fingerprint,
            "top_k": self.k,
            "hits": self.hits,
            "misses": self.misses,
            "filled_before_training": self.filled,
            "rebuilt": self.rebuilt,
        }
