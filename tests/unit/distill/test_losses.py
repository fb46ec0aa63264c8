"""KD losses against hand computations on small tensors."""

from __future__ import annotations

import math

import pytest
import torch

from honed.distill.losses import distill_loss, kd_loss


def softmax(xs: list[float], t: float = 1.0) -> list[float]:
    e = [math.exp(x / t) for x in xs]
    return [v / sum(e) for v in e]


def kl(a: list[float], b: list[float]) -> float:
    return sum(x * math.log(x / y) for x, y in zip(a, b, strict=True))


STUDENT = [[2.0, 0.5, -1.0, 0.0, 1.0]]  # one position, vocab 5
TEACHER_IDS = [[0, 4, 1]]  # its top-3
TEACHER_LOGITS = [[3.0, 1.5, 0.2]]


def run(kind: str, t: float, beta: float = 0.5) -> float:
    return float(
        kd_loss(
            torch.tensor(STUDENT),
            torch.tensor(TEACHER_IDS),
            torch.tensor(TEACHER_LOGITS),
            torch.tensor([True]),
            kind=kind,
            temperature=t,
            beta=beta,
        )
    )


def by_hand(t: float) -> tuple[list[float], list[float]]:
    p = softmax(TEACHER_LOGITS[0], t)
    q = softmax([STUDENT[0][i] for i in TEACHER_IDS[0]], t)  # renormalised on the top-k
    return p, q


@pytest.mark.parametrize("t", [1.0, 2.0, 0.5])
def test_forward_and_reverse_kl_match_the_hand_computation(t):
    p, q = by_hand(t)
    assert run("forward_kl", t) == pytest.approx(kl(p, q) * t * t, rel=1e-5)
    assert run("reverse_kl", t) == pytest.approx(kl(q, p) * t * t, rel=1e-5)


@pytest.mark.parametrize("beta", [0.1, 0.5, 0.9])
def test_generalized_jsd_matches_the_hand_computation(beta):
    p, q = by_hand(2.0)
    m = [beta * a + (1 - beta) * b for a, b in zip(p, q, strict=True)]
    expected = (beta * kl(p, m) + (1 - beta) * kl(q, m)) * 4.0
    assert run("jsd", 2.0, beta) == pytest.approx(expected, rel=1e-5)


def test_jsd_ends_are_the_two_kls():
    assert run("jsd", 1.0, 0.0) == pytest.approx(run("forward_kl", 1.0))
    assert run("jsd", 1.0, 1.0) == pytest.approx(run("reverse_kl", 1.0))


def test_identical_distributions_cost_nothing_and_masked_positions_do_not_count():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 5.0, -5.0]])
    ids = torch.tensor([[2, 1, 0], [1, 0, 2]])
    same = torch.gather(logits, -1, ids)
    for kind in ("forward_kl", "reverse_kl", "jsd"):
        assert float(kd_loss(logits, ids, same, torch.tensor([True, True]), kind=kind)) == (
            pytest.approx(0.0, abs=1e-6)
        )
    other = same.clone()
    other[1] = torch.tensor([-9.0, 9.0, 0.0])  # very different, but masked out
    assert float(kd_loss(logits, ids, other, torch.tensor([True, False]))) == pytest.approx(
        0.0, abs=1e-6
    )


def test_the_mix_is_alpha_kd_plus_one_minus_alpha_ce():
    student = torch.tensor([[STUDENT[0], STUDENT[0]]])
    labels = torch.tensor([[0, -100]])
    ids = torch.tensor([[TEACHER_IDS[0]] * 2])
    tl = torch.tensor([[TEACHER_LOGITS[0], [-9.0, 9.0, 0.0]]])  # the second is not scored
    loss, parts = distill_loss(student, labels, ids, tl, alpha=0.3)
    ce = -math.log(softmax(STUDENT[0])[0])
    p, q = by_hand(1.0)
    assert parts["ce"] == pytest.approx(ce, rel=1e-5)
    assert parts["kd"] == pytest.approx(kl(p, q), rel=1e-5)
    assert float(loss) == pytest.approx(0.3 * kl(p, q) + 0.7 * ce, rel=1e-5)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="temperature"):
        run("forward_kl", 0.0)
    with pytest.raises(ValueError, match="unknown KD loss"):
        run("cosine", 1.0)
