"""The teacher cache: round trip, hit/miss counts, and rebuild for another teacher."""

from __future__ import annotations

import torch

from honed.distill.cache import TeacherCache


def test_round_trip_and_counts(tmp_path):
    cache = TeacherCache(tmp_path / "c", "aaa", k=2)
    assert cache.get([1, 2, 3]) is None
    ids, logits = torch.tensor([[5, 1], [2, 3], [0, 9]]), torch.tensor([[1.5, 0.25]] * 3)
    cache.put([1, 2, 3], ids, logits)
    got_ids, got_logits = cache.get([1, 2, 3])
    assert torch.equal(got_ids, ids) and torch.allclose(got_logits, logits)
    assert cache.get([1, 2]) is None
    assert (cache.hits, cache.misses) == (1, 2)
    assert cache.has([1, 2, 3]) and not cache.has([1, 2])  # has() is not counted
    assert (cache.hits, cache.misses) == (1, 2)


def test_a_cache_of_another_teacher_or_k_is_rebuilt(tmp_path):
    TeacherCache(tmp_path / "c", "aaa", k=2).put([1], torch.tensor([[1, 2]]), torch.ones(1, 2))
    same = TeacherCache(tmp_path / "c", "aaa", k=2)
    assert not same.rebuilt and same.get([1]) is not None
    other = TeacherCache(tmp_path / "c", "bbb", k=2)
    assert other.rebuilt and other.get([1]) is None
    assert TeacherCache(tmp_path / "c", "bbb", k=4).rebuilt
