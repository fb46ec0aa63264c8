"""Progress bars and status lines on stderr (rich), for anything longer than a few seconds."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import TypeVar

from rich.console import Console
from rich.progress import track as rich_track

T = TypeVar("T")
console = Console(stderr=True)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar."""
    yield from rich_track(
        items, description=description, total=total, console=console, transient=True
    )


def status(message: str) -> AbstractContextManager:
    """A spinner with a message while a block runs."""
    return console.status(message)
