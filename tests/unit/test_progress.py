"""Progress away from a terminal: plain lines in a log file, not a silent transient bar."""

from __future__ import annotations

from honed.progress import plain_track, track


def test_plain_lines_count_what_is_done(capsys) -> None:
    seen, printed = [], ""
    for item in plain_track(["a", "b", "c"], "scoring", total=3, every_s=0.0):
        seen.append(item)
        printed += capsys.readouterr().err
        assert printed.count("scoring:") == len(seen) - 1  # a line once an item is done
    assert seen == ["a", "b", "c"]
    printed += capsys.readouterr().err
    assert [line.split(" (")[0] for line in printed.splitlines()] == [
        "scoring: 1/3",
        "scoring: 2/3",
        "scoring: 3/3",
    ]


def test_plain_lines_are_throttled_but_the_end_is_always_said(capsys) -> None:
    assert list(plain_track(range(5), "mining", total=5, every_s=3600.0)) == list(range(5))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mining: 5/5 (")


def test_track_off_a_terminal_prints_lines_with_the_total_of_a_list(capsys) -> None:
    assert list(track([1, 2], "benchmarking")) == [1, 2]
    assert "benchmarking: 2/2 (" in capsys.readouterr().err
    assert list(track(iter([1, 2]), "mining")) == [1, 2]  # no length: the count alone
    assert "mining: 2 (" in capsys.readouterr().err
