"""The export checks: divergence positions, KL against a hand computation, and warnings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from honed.quantize.checks import (
    Thresholds,
    first_difference,
    greedy_agreement,
    mean_kl,
    warnings_for,
)
from honed.runtime.base import Completion


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
        "agreement": {"exact_match": 1.0, "agreement": 1.0},
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
        (("agreement", "agreement"), 0.25, "greedy agreement 25%"),
        (("kl", "mean_kl"), 0.5, "KL 0.5000"),
    ],
)
def test_each_kind_of_damage_is_flagged(path, value, expected):
    checks = healthy_checks()
    checks[path[0]][path[1]] = value
    found = warnings_for(checks, Thresholds(min_agreement=0.5, max_kl=0.1))
    assert len(found) == 1 and expected in found[0]


class CharModel:
    """A fake source backend on characters: token i is chr(i); its next-token logits prefer
    `favourite` by `margin` nats over every other character, everywhere."""

    def __init__(self, completions: list[str], favourite: str = "a", margin: float = 0.3):
        self.completions, self.favourite, self.margin = completions, favourite, margin

    def generate(self, prompts, params):
        return [Completion(text, 1, len(text), 0.0, 0.0) for text in self.completions]

    def tokenize(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def count_tokens(self, text: str) -> int:
        return len(text)

    def token_logits(self, ids: list[int]) -> np.ndarray:
        logits = np.zeros((len(ids), 128), dtype=np.float32)
        logits[:, ord(self.favourite)] = self.margin
        return logits


def test_a_flip_at_a_near_tie_counts_as_agreeing_and_a_far_one_does_not():
    source = CharModel(["ab", "ac", "ad"], favourite="a", margin=0.3)
    export = CharModel(["ab", "bc", "ad"])  # the second prompt's first token flipped a -> b
    near = greedy_agreement(source, export, ("p", "q", "r"), 4, near_tie_nats=1.0)
    assert near["exact_match"] == pytest.approx(2 / 3)
    assert near["margin_nats"][0] is None and near["margin_nats"][2] is None
    assert near["margin_nats"][1] == pytest.approx(0.3)  # logit of a minus logit of b
    assert near["near_ties"] == 1 and near["agreement"] == 1.0
    far = greedy_agreement(
        CharModel(["ab", "ac", "ad"], margin=5.0), export, ("p", "q", "r"), 4, near_tie_nats=1.0
    )
    assert far["near_ties"] == 0 and far["agreement"] == pytest.approx(2 / 3)


def test_a_completion_that_stops_early_is_no_near_tie():
    source = CharModel(["abc"], margin=0.0)
    found = greedy_agreement(source, CharModel(["ab"]), ("p",), 4)
    assert found["margin_nats"] == [None] and found["agreement"] == 0.0


def test_the_warning_names_exact_matches_and_the_near_tie_rule():
    checks = healthy_checks()
    checks["agreement"] = {"exact_match": 0.125, "agreement": 0.25}
    (line,) = warnings_for(checks, Thresholds(min_agreement=0.5, near_tie_nats=1.0))
    assert "greedy agreement 25%" in line and "exact match 12%" in line and "1.0 nats" in line


def test_manifests_from_before_the_near_tie_count_still_warn_on_exact_match():
    checks = healthy_checks()
    checks["agreement"] = {"exact_match": 0.25}
    (line,) = warnings_for(checks, Thresholds(min_agreement=0.5))
    assert "greedy agreement 25%" in line


def test_text_to_text_sources_get_no_margin():
    """A T5 answer does not continue its prompt: its flips are not scored as near-ties."""
    source = CharModel(["ab", "ac"], margin=0.0)
    source.is_seq2seq = True
    found = greedy_agreement(source, CharModel(["ab", "bc"]), ("p", "q"), 4)
    assert found["margin_nats"] == [None, None] and found["near_ties"] == 0


class SpaceModel(CharModel):
    """CharModel whose tokenizer merges two spaces into one token (200), while the source
    generated them one at a time: encoding its completion again does not give its tokens back.
    After a single space it prefers x by 0.4 nats; after the merged token, y by 2."""

    def __init__(self, completions: list[str], ids: list[list[int]] | None = None):
        super().__init__(completions)
        self.ids = ids

    def generate(self, prompts, params):
        done = super().generate(prompts, params)
        for completion, ids in zip(done, self.ids or [None] * len(done), strict=True):
            completion.token_ids = ids
        return done

    def text_ids(self, text: str) -> list[int]:
        ids, at = [], 0
        while at < len(text):
            merged = text.startswith("  ", at)
            ids.append(200 if merged else ord(text[at]))
            at += 2 if merged else 1
        return ids

    def tokenize(self, text: str) -> list[int]:
        return self.text_ids(text)

    def decode_ids(self, ids: list[int]) -> str:
        return "".join("  " if i == 200 else chr(i) for i in ids)

    def token_logits(self, ids: list[int]) -> np.ndarray:
        logits = np.zeros((len(ids), 256), dtype=np.float32)
        logits[-1, ord("x") if ids[-1] == 32 else ord("y")] = 0.4 if ids[-1] == 32 else 2.0
        return logits


def test_the_margin_is_read_where_the_source_chose_its_token():
    """Encoded again, the source's '  x' is [200, x], a context it never saw: there it would
    prefer the export's y (a margin of -2). In the tokens it generated, [32, 32, x], it chose
    x over y by 0.4 nats: a near-tie."""
    source = SpaceModel(["  x"], ids=[[32, 32, ord("x")]])
    assert source.tokenize("p  x") == [ord("p"), 200, ord("x")]
    found = greedy_agreement(source, CharModel(["  y"]), ("p",), 4, near_tie_nats=1.0)
    assert found["margin_nats"] == [pytest.approx(0.4)] and found["near_ties"] == 1
    encoded_again = greedy_agreement(SpaceModel(["  x"]), CharModel(["  y"]), ("p",), 4)
    assert encoded_again["margin_nats"] == [pytest.approx(-2.0)]  # without the ids
