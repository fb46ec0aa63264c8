"""GGUF content keys: a copy of a file gets the same key, and an indexed file is not re-read."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from honed.models import gguf_digest
from honed.models.gguf_digest import file_digest


def _file(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_copies_share_a_key_and_other_content_does_not(tmp_path):
    index = tmp_path / "index"
    first = _file(tmp_path / "a" / "model.gguf", b"GGUF" + bytes(range(256)) * 100)
    copy = tmp_path / "b" / "model.gguf"
    copy.parent.mkdir()
    shutil.copyfile(first, copy)
    os.utime(copy, (1_000_000, 1_000_000))  # a reinstall: same bytes, another mtime
    other = _file(tmp_path / "c" / "model.gguf", b"GGUF" + bytes(25600))

    assert file_digest(first, index) == file_digest(copy, index)
    assert file_digest(first, index) != file_digest(other, index)
    assert file_digest(first, index) == hashlib.sha256(first.read_bytes()).hexdigest()[:16]


def test_an_indexed_file_is_not_hashed_again(tmp_path, monkeypatch):
    index = tmp_path / "index"
    model = _file(tmp_path / "model.gguf", b"GGUF weights")
    key = file_digest(model, index)

    def no_hashing(*args, **kwargs):
        raise AssertionError("hashed again")

    monkeypatch.setattr(gguf_digest.hashlib, "file_digest", no_hashing)
    assert file_digest(model, index) == key
    model.write_bytes(b"GGUF other weights")  # changed in place: size and mtime move
    with pytest.raises(AssertionError, match="hashed again"):
        file_digest(model, index)


def test_a_damaged_index_costs_only_a_hash(tmp_path):
    index = tmp_path / "index"
    model = _file(tmp_path / "model.gguf", b"GGUF weights")
    (index).mkdir()
    (index / gguf_digest.INDEX).write_text("{not json")
    assert file_digest(model, index) == hashlib.sha256(b"GGUF weights").hexdigest()[:16]
