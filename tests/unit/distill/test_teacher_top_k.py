"""The teacher's top-k in bounded groups of rows: the same ids and logits as one forward pass
over the whole padded batch, row by row."""

from __future__ import annotations

import pytest
import torch

from honed.distill import kd


def test_groups_keep_each_padded_block_within_the_budget():
    assert kd.token_groups([3, 3, 4, 5, 9], 10) == [(0, 2), (2, 4), (4, 5)]
    assert kd.token_groups([12, 2], 10) == [(0, 1), (1, 2)]  # a long row alone
    assert kd.token_groups([2, 2, 2], 100) == [(0, 3)]
    assert kd.token_groups([], 10) == []


class Loaded(kd.Teacher):
    """A teacher whose model is already built (no loading from a reference)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__("tiny", "float32", False)
        self._model = model


@pytest.fixture(scope="module")
def teacher_model(tiny_llama) -> torch.nn.Module:
    return tiny_llama(60)


def reference(model: torch.nn.Module, row: list[int], k: int) -> tuple[torch.Tensor, ...]:
    with torch.inference_mode():
        values, index = model(input_ids=torch.tensor([row])).logits[0].topk(k, dim=-1)
    return index, values


@pytest.mark.parametrize("budget", [1, 12, 10_000])
def test_grouped_top_k_matches_each_row_alone(teacher_model, monkeypatch, budget):
    monkeypatch.setattr(kd, "TEACHER_TOKENS", budget)
    rows = [[5, 9, 2], [7, 1, 3, 4, 8, 11], [1, 2], [30, 31, 32, 33]]
    teacher = Loaded(teacher_model)
    got = teacher.top_k(rows, 4, 60)
    assert teacher.calls == 1 and len(got) == len(rows)
    for row, (ids, logits) in zip(rows, got, strict=True):
        want_ids, want_logits = reference(teacher_model, row, 4)
        assert ids.shape == (len(row), 4) and logits.dtype == torch.float32
        assert torch.equal(ids, want_ids)
        assert torch.allclose(logits, want_logits, atol=1e-5)


def test_a_model_without_logits_to_keep_is_sliced_after_its_head(teacher_model):
    class NoKeep(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = teacher_model

        def forward(self, input_ids, attention_mask):  # noqa: ANN001, ANN202
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    rows = [[5, 9, 2], [7, 1, 3, 4]]
    assert not kd.takes_logits_to_keep(NoKeep())
    for row, (ids, _) in zip(rows, Loaded(NoKeep()).top_k(rows, 3, 60), strict=True):
        assert torch.equal(ids, reference(teacher_model, row, 3)[0])


def test_warming_the_cache_says_how_far_the_teacher_got(teacher_model, tmp_path, capsys):
    from honed.distill.cache import TeacherCache

    settings = kd.KDSettings(alpha=0.5, kind="forward_kl", temperature=1.0, beta=0.5, top_k=4)
    state = kd.KDState(settings, TeacherCache(tmp_path, "sha", 4), Loaded(teacher_model))
    assert state.warm([[5, 9, 2], [7, 1, 3, 4], [1, 2]], 60, batch_size=2) == 3
    assert "teacher top-4, batches of 2 sequences: 2/2" in capsys.readouterr().err
    assert state.warm([[5, 9, 2]], 60, batch_size=2) == 0  # cached: the teacher is not run
