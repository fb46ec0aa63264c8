"""Text helpers shared by the backends: stop sequences, streaming hold-back, token budgets."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from honed.errors import HonedError


def clean_stops(stop: Iterable[str]) -> tuple[str, ...]:
    """The non-empty stop strings, in order, without duplicates."""
    return tuple(dict.fromkeys(s for s in stop if s))


def find_stop(text: str, stop: Iterable[str]) -> int | None:
    """Index of the earliest stop string in text, or None when there is none."""
    hits = [i for s in stop if s and (i := text.find(s)) >= 0]
    return min(hits) if hits else None


def truncate_at_stop(text: str, stop: Iterable[str]) -> tuple[str, bool]:
    """Text up to (not including) the first stop string, and whether one was found."""
    index = find_stop(text, stop)
    return (text, False) if index is None else (text[:index], True)


def partial_stop_len(text: str, stop: Iterable[str]) -> int:
    """Length of the longest end of text that could still grow into a stop string."""
    best = 0
    for s in stop:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


class StopFilter:
    """Turns streamed pieces into safe output: holds back what may start a stop string.

    `feed` returns the text that can be shown now; `stopped` turns true once a stop string has
    appeared, after which nothing more is emitted. `flush` releases the held-back tail at the end.
    """

    def __init__(self, stop: Iterable[str]) -> None:
        self.stop = clean_stops(stop)
        self.stopped = False
        self._pending = ""

    def feed(self, piece: str) -> str:
        """Accept one piece; return what is now certain to be part of the completion."""
        if self.stopped:
            return ""
        text = self._pending + piece
        head, self.stopped = truncate_at_stop(text, self.stop)
        if self.stopped:
            self._pending = ""
            return head
        keep = partial_stop_len(text, self.stop)
        self._pending = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """The held-back tail, once the stream has ended without a stop string."""
        out, self._pending = ("" if self.stopped else self._pending), ""
        return out


def filter_stream(pieces: Iterable[str], stops: StopFilter) -> Iterator[str]:
    """Yield pieces cut at the first stop string (which is not yielded), skipping empty ones.

    Afterwards `stops.stopped` tells whether the stream ended on a stop string.
    """
    for piece in pieces:
        if out := stops.feed(piece):
            yield out
        if stops.stopped:
            return
    if tail := stops.flush():
        yield tail


def token_budget(prompt_tokens: int, max_new_tokens: int, context_size: int) -> int:
    """New tokens allowed for a prompt: max_new_tokens, capped by what is left of the context."""
    if max_new_tokens < 1:
        raise HonedError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    room = context_size - prompt_tokens
    if room < 1:
        raise HonedError(
            f"prompt has {prompt_tokens} tokens but the context holds {context_size}: "
            "shorten the prompt or use a model (or n_ctx) with a longer context"
        )
    return min(max_new_tokens, room)
