"""Code extraction from chat replies: fenced blocks first, then fallbacks for bare code."""

from __future__ import annotations

import pytest

from honed.evaluate.extract import (
    answer_complete,
    bare_code,
    extract_code,
    fenced_blocks,
    strip_main_guard,
)

FUNC = "def add(a, b):\n    return a + b\n"


def test_python_block_is_taken_from_prose():
    reply = f"Sure! Here it is:\n```python\n{FUNC}```\nIt adds two numbers."
    assert extract_code(reply, "add") == FUNC


def test_block_defining_the_entry_point_wins_over_longer_ones():
    usage = "```python\n" + "print(add(1, 2))\n" * 10 + "```\n"
    reply = f"{usage}and the function:\n```py\n{FUNC}```\n"
    assert extract_code(reply, "add") == FUNC


def test_longest_python_block_without_entry_point():
    reply = "```python\nx = 1\n```\n```python\ndef other():\n    return 2\n```"
    assert extract_code(reply, "missing") == "def other():\n    return 2\n"


def test_python_blocks_are_preferred_to_other_languages():
    reply = "```bash\npip install nothing-at-all-here\n```\n```\n" + FUNC + "```"
    assert extract_code(reply) == FUNC


def test_unclosed_fence_of_a_truncated_reply():
    reply = f"Here:\n```python\n{FUNC}    # and then the model ran out of tok"
    assert extract_code(reply, "add").startswith(FUNC)
    assert len(fenced_blocks(reply)) == 1


def test_bare_code_reply_is_used_as_is():
    assert extract_code(FUNC, "add") == FUNC


def test_bare_code_after_prose_drops_trailing_text():
    reply = f"The answer is below.\n{FUNC}This returns the sum of a and b."
    assert bare_code(reply).strip() == FUNC.strip()


def test_main_guard_is_removed_but_code_after_it_kept():
    code = f"{FUNC}\nif __name__ == '__main__':\n    print(add(1, 2))\n\n    x = input()\nY = 3\n"
    assert strip_main_guard(code) == f"{FUNC}\nY = 3\n"
    assert "input" not in extract_code(f"```python\n{code}```", "add")


def test_reply_without_code_is_returned_as_text():
    assert extract_code("no code here at all", "f") == "no code here at all\n"


REPLIES = [
    f"Sure! Here it is:\n```python\n{FUNC}```\nIt adds two numbers.\n```python\nprint(1)\n```",
    f"```python\nprint(add(1, 2))\n```\nand the function:\n```py\n{FUNC}```\nDone.",
    f"```bash\npip install x\n```\n```\n{FUNC}```\n```python\ndef add(a, b):\n    return 0\n```",
    f"```python\ndef helper():\n    return 1\n```\n```python\n{FUNC}```\ntext ```python\nx",
    f"```python\n{FUNC}\nif __name__ == '__main__':\n    print(add(1, 2))\n```\nMore prose.",
    "Code:\n```python\ndef add(a, b):\n    s = '```'\n    return a + b\n```\nafter",
    f"```python\n{FUNC}```python\nprint(2)\n```\n",
]


@pytest.mark.parametrize("reply", REPLIES)
def test_a_complete_answer_is_what_the_whole_reply_gives(reply):
    """Where answer_complete first says yes, the code extracted is already final, and it does
    say yes before the end of each of these replies (which all go on past their code)."""
    final = extract_code(reply, "add")
    ends = [n for n in range(len(reply) + 1) if answer_complete(reply[:n], "add")]
    assert ends and ends[0] < len(reply)
    for n in ends:
        assert extract_code(reply[:n], "add") == final


def test_an_answer_is_not_complete_before_its_block_closes():
    reply = f"Here:\n```python\n{FUNC}"
    assert not answer_complete(reply, "add")
    assert not answer_complete(reply + "``", "add")
    assert answer_complete(reply + "```", "add")
    assert not answer_complete(reply + "```", "sub")  # another function under test
    assert not answer_complete(reply + "```", None)  # nothing to look for: never early
    assert not answer_complete(f"```bash\n{FUNC}```\n", "add")  # not Python
