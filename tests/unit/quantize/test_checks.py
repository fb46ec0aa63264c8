"""The export checks: divergence positions, KL against a hand computation, and warnings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from honed.quantize.checks import Thresholds, first_difference, mean_kl, warnings_for


def test_first_difference_finds_the_first_mismatch_or_none():
    assert first_difference([1, 2, 3], [1, 2, 3]) is None
    assert first_difference([1, 2, 3], [1, 5, 3]) == 1
    assert first_difference("abc", "ab") == 2  # one is a prefix of the other
    assert first_difference("", "") is None


def test_mean_kl_matches_a_hand_computation():
    p = np.array([[math.log(0.5), math.log(0.5)], [0.0, 0.0]])
    q = np.array([[math.log(0.9), math.log(0.1)], [0.0, 0.0]])
    first = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert mean_kl(p, q) == pytest.approx(first / 2)  # second position: identical, KL 0
    assert mean_kl(p, p) == pytest.approx(0.0, abs=1e-12)


def test_mean_kl_uses_the_shared_vocabulary_only():
    p = np.array([[1.0, 2.0, 3.0]])
    q = np.array([[1.0, 2.0, 3.0, 50.0]])  # a padded vocabulary row must not count
    assert mean_kl(p, q) == pytest.approx(0.0, abs=1e-12)


def healthy_checks() -> dict:
    return {
        "special_tokens": {
            "tokenization_matches": True,
            "chat_template_matches": True,
            "eos_matches": True,
            "eos": [2, 2],
            "stop_tokens_missing": [],
        },
        "agreement": {"exact_match": 1.0},
        "kl": {"mean_kl": 0.001},
    }


def test_a_faithful_export_raises_no_warning():
    assert warnings_for(healthy_checks(), Thresholds()) == []


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("special_tokens", "eos_matches"), False, "EOS token changed"),
        (("special_tokens", "chat_template_matches"), False, "chat template"),
        (("special_tokens", "tokenization_matches"), False, "tokenization"),
        (("special_tokens", "stop_tokens_missing"), [7], "stop tokens lost"),
        (("agreement", "exact_match"), 0.25, "greedy agreement 25%"),
        (("kl", "mean_kl"), 0.5, "KL 0.5000"),
    ],
)
def test_each_kind_of_damage_is_flagged(path, value, expected):
    checks = healthy_checks()
    checks[path[0]][path[1]] = value
    found = warnings_for(checks, Thresholds(min_agreement=0.5, max_kl=0.1))
    assert len(found) == 1 and expected in found[0]
