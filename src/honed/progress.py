"""Progress on stderr for anything longer than a few seconds: a rich bar on a terminal, and
a plain line at most every `PLAIN_EVERY_S` seconds (and at the end) when stderr goes to a log
file, so that a long run in the background still says how far it got."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sized
from contextlib import AbstractContextManager
from typing import TypeVar

from rich.console import Console
from rich.progress import track as rich_track

T = TypeVar("T")
console = Console(stderr=True)
PLAIN_EVERY_S = 60.0


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar (a terminal) or progress lines (anything else)."""
    if total is None and isinstance(items, Sized):
        total = len(items)
    if console.is_terminal:
        yield from rich_track(
            items, description=description, total=total, console=console, transient=True
        )
    else:
        yield from plain_track(items, description, total)


def plain_track(
    items: Iterable[T], description: str, total: int | None, every_s: float = PLAIN_EVERY_S
) -> Iterator[T]:
    """Yield the items; after one is done, print 'description: done/total (elapsed)' when
    `every_s` has passed since the last line, and always after the last one."""
    start = last = time.monotonic()
    said, done = 0, 0
    for done, item in enumerate(items, start=1):
        yield item
        if time.monotonic() - last >= every_s or done == total:
            last, said = time.monotonic(), done
            _say(description, done, total, last - start)
    if done != said:  # an end not said yet: no total, or fewer items than it
        _say(description, done, total, time.monotonic() - start)


def _say(description: str, done: int, total: int | None, seconds: float) -> None:
    of = f"/{total}" if total is not None else ""
    console.print(f"{description}: {done}{of} ({seconds:.0f} s)", highlight=False)


def status(message: str) -> AbstractContextManager:
    """A spinner with a message while a block runs."""
    return console.status(message)
