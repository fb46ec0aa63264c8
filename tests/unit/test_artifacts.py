"""Artifact directories: refusal to clobber, atomic publish, manifest hashes, lineage."""

from __future__ import annotations

import json

import pytest

from honed import artifacts
from honed.errors import HonedError


def test_prepare_refuses_existing_and_interrupted(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "keep.txt").write_text("precious")
    with pytest.raises(HonedError, match="--overwrite"):
        artifacts.prepare_output(final, overwrite=False, resume=False)
    assert (final / "keep.txt").read_text() == "precious"
    other = tmp_path / "other"
    work = artifacts.prepare_output(other, overwrite=False, resume=False)
    assert work.name == "other.tmp" and work.is_dir()
    with pytest.raises(HonedError, match="--resume"):
        artifacts.prepare_output(other, overwrite=False, resume=False)
    assert artifacts.prepare_output(other, overwrite=False, resume=True) == work
    with pytest.raises(HonedError, match="nothing to resume"):
        artifacts.prepare_output(tmp_path / "never", overwrite=False, resume=True)


def test_manifest_hashes_and_publish_replaces(tmp_path):
    final = tmp_path / "a"
    work = artifacts.prepare_output(final, overwrite=False, resume=False)
    (work / "w.bin").write_bytes(b"abc")
    (work / "checkpoints").mkdir()
    (work / "checkpoints" / "x").write_text("skip")
    m = artifacts.write_manifest(work, {"kind": "model", "parent": {}})
    assert m["files"] == {"w.bin": artifacts.sha256_file(work / "w.bin")}
    artifacts.publish(work, final)
    assert artifacts.is_artifact(final) and not work.exists()
    work2 = artifacts.prepare_output(final, overwrite=True, resume=False)
    (work2 / "new").write_text("1")
    artifacts.write_manifest(work2, {"kind": "model"})
    artifacts.publish(work2, final)
    assert (final / "new").exists() and not (final / "w.bin").exists()


def test_lineage_follows_parents(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for path, parent in ((a, None), (b, str(a))):
        path.mkdir()
        (path / "manifest.json").write_text(json.dumps({"kind": "x", "parent": {"path": parent}}))
    assert [m["parent"]["path"] for m in artifacts.lineage(b)] == [str(a), None]
