"""Take the code out of a chat reply: fenced blocks first, then fallbacks for bare code.

Order of preference: a Python (or untagged) fenced block that defines the function under
test; else the longest such block; else any fenced block; a fence left open by a reply cut
at the token limit counts as a block. A reply without fences is used from its first
code-looking line, dropping trailing prose until it parses. A top-level
`if __name__ == "__main__":` block is removed: it is example usage, not the solution.

`answer_complete` tells, while a reply is still being generated, when `extract_code` can no
longer change: the eval ends the reply there instead of generating the prose that follows.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+.#-]*)[^\n]*\n(.*?)(?:^[ \t]*```|\Z)", re.M | re.S)
PYTHON_TAGS = {"", "python", "py", "python3", "py3"}
CODE_START = re.compile(r"^(?:def |async def |class |import |from \S+ import |@)", re.M)
MAIN_GUARD = re.compile(r"^if\s+__name__\s*==\s*['\"]__main__['\"]\s*:.*$", re.M)


@dataclass(frozen=True)
class Block:
    """One fenced block of a reply."""

    lang: str
    code: str


def fenced_blocks(reply: str) -> list[Block]:
    """All fenced blocks, in order (an unclosed last fence runs to the end of the reply)."""
    return [Block(m.group(1).lower(), m.group(2)) for m in FENCE.finditer(reply)]


def parses(code: str) -> bool:
    """True when code is syntactically valid Python."""
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def defines(code: str, name: str | None) -> bool:
    """True when code defines a function of that name."""
    pattern = rf"^\s*(?:async\s+)?def\s+{re.escape(name or '')}\s*\("
    return bool(name and re.search(pattern, code, re.M))


def _pick_block(blocks: list[Block], entry_point: str | None) -> str:
    python = [b.code for b in blocks if b.lang in PYTHON_TAGS] or [b.code for b in blocks]
    defining = [code for code in python if defines(code, entry_point)]
    return defining[0] if defining else max(python, key=len)


def bare_code(reply: str) -> str:
    """Code from a reply without fences: from the first code line, up to where it parses."""
    if parses(reply):
        return reply
    start = CODE_START.search(reply)
    lines = reply[start.start() if start else 0 :].splitlines()
    for end in range(len(lines), 0, -1):
        candidate = "\n".join(lines[:end])
        if parses(candidate):
            return candidate
    return "\n".join(lines)


def strip_main_guard(code: str) -> str:
    """Remove a top-level `if __name__ == "__main__":` block (the lines indented under it)."""
    guard = MAIN_GUARD.search(code)
    if guard is None:
        return code
    before, lines = code[: guard.start()], code[guard.end() :].splitlines(keepends=True)
    body = 0  # the guard's body: the blank or indented lines right after it
    while body < len(lines) and (not lines[body].strip() or lines[body][0] in " \t"):
        body += 1
    return strip_main_guard(before + "".join(lines[body:]))


def answer_complete(reply: str, entry_point: str | None) -> bool:
    """True once the reply holds a closed Python (or untagged) block that defines entry_point.

    `extract_code` takes the first such block whatever text follows it (later blocks can only
    come after it in the preference order), so the rest of the reply cannot change the code.
    """
    if not entry_point or reply.count("```") < 2:
        return False
    for match in FENCE.finditer(reply):
        closed = match.group(0).rsplit("\n", 1)[-1].strip() == "```"
        lang, code = match.group(1).lower(), match.group(2)
        if closed and lang in PYTHON_TAGS and defines(code, entry_point):
            return True
    return False


def extract_code(reply: str, entry_point: str | None = None) -> str:
    """The program a chat reply proposes, preferring the block that defines `entry_point`."""
    blocks = fenced_blocks(reply)
    code = _pick_block(blocks, entry_point) if blocks else bare_code(reply)
    return strip_main_guard(code).strip("\n") + "\n"
