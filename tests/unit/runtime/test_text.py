"""Stop-sequence helpers shared by the backends."""

from __future__ import annotations

import pytest

from honed.errors import HonedError
from honed.runtime.text import (
    StopFilter,
    clean_stops,
    filter_stream,
    partial_stop_len,
    token_budget,
    truncate_at_stop,
)


def test_truncate_at_earliest_stop() -> None:
    assert truncate_at_stop("a = 1\ndef f():\nclass", ["\nclass", "\ndef"]) == ("a = 1", True)
    assert truncate_at_stop("no stop here", ["\ndef"]) == ("no stop here", False)
    assert truncate_at_stop("abc", []) == ("abc", False)


def test_clean_stops_drops_empty_and_duplicates() -> None:
    assert clean_stops(["", "\n", "x", "\n"]) == ("\n", "x")


def test_partial_stop_len_finds_a_stop_in_the_making() -> None:
    assert partial_stop_len("return x\nde", ["\ndef"]) == 3
    assert partial_stop_len("return x", ["\ndef"]) == 0
    assert partial_stop_len("ab", ["abc", "bx"]) == 2


@pytest.mark.parametrize(
    "pieces",
    [
        ["x = 1", "\n", "d", "ef g"],
        ["x = 1\nd", "e", "f g"],
        ["x", " = 1\ndef g"],
    ],
)
def test_stream_filter_matches_truncation_however_split(pieces: list[str]) -> None:
    stops = StopFilter(["\ndef"])
    assert "".join(filter_stream(pieces, stops)) == "x = 1"
    assert stops.stopped


def test_stream_filter_releases_a_false_alarm() -> None:
    stops = StopFilter(["\ndef"])
    assert "".join(filter_stream(["x\nd", "o it"], stops)) == "x\ndo it"
    assert not stops.stopped
    assert "".join(filter_stream(["x\nde"], StopFilter(["\ndef"]))) == "x\nde"  # ended


def test_stop_filter_holds_back_then_stops() -> None:
    stops = StopFilter(["STOP"])
    assert stops.feed("abc ST") == "abc "
    assert stops.feed("OP more") == ""
    assert stops.stopped and stops.feed("later") == "" and stops.flush() == ""


def test_token_budget() -> None:
    assert token_budget(10, 50, 100) == 50
    assert token_budget(90, 50, 100) == 10
    with pytest.raises(HonedError, match="context"):
        token_budget(100, 5, 100)
    with pytest.raises(HonedError, match="max_new_tokens"):
        token_budget(1, 0, 100)
