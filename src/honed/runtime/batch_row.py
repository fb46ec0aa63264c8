"""One request's row in a continuously batched decode, whatever the runtime.

A row holds its prompt's tokens, its token budget and its text so far, cut at stop strings
(or where `finished` says the text is complete). For streaming, `on_text` gets each new piece
of text as it is accepted and `on_end` is called once the row is closed (`error` then holds
what stopped the batch, if anything); `cancelled` (set from any thread) ends the row at its
next token. A runtime's row adds how it samples and turns tokens into text (`_piece`, a
token's text as it comes, `_tail`, the text still held back at the end, and `_release`, what
to free).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from honed.runtime.text import StopFilter


@dataclass
class BatchRow:
    """A prompt's generation in a batch: its text so far and why it ended."""

    prompt: str
    tokens: list[int]
    budget: int
    stops: StopFilter
    finished: Callable[[str, str], bool] | None = None
    on_text: Callable[[str], None] | None = None
    on_end: Callable[[], None] | None = None
    text: str = ""
    count: int = 0
    first_at: float | None = None  # when its first token was sampled
    fed: int = 0  # prompt tokens decoded so far
    cut: bool = False  # a stop string appeared, or `finished` said the text is complete
    eog: bool = False  # an end-of-generation token was sampled
    cancelled: bool = False
    closed: bool = False
    error: BaseException | None = None

    @property
    def ended(self) -> bool:
        return self.cut or self.eog

    def take(self, token: int, end: bool) -> bool:
        """Count a sampled token: an end-of-generation one (`end`) ends the row, any other's
        text is taken. Returns whether the row goes on."""
        self.count += 1
        self.first_at = self.first_at or time.perf_counter()
        if end:
            self.eog = True
            return False
        return self.accept(self._piece(token))

    def accept(self, piece: str) -> bool:
        """Take one token's text; return whether the row goes on."""
        if out := self.stops.feed(piece):
            self._add(out)
            self.cut = self.finished is not None and self.finished(self.prompt, self.text)
        self.cut = self.cut or self.stops.stopped
        return not self.cut and self.count < self.budget and not self.cancelled

    def close(self) -> None:
        """Add the text held back (a partial character or stop string) unless it was cut,
        cancelled or failed; free what the row holds. Idempotent."""
        if self.closed:
            return
        self.closed = True
        if not self.cut and not self.cancelled and self.error is None:
            self._add(self.stops.feed(self._tail()) + self.stops.flush())
            self.cut = self.stops.stopped
        self._release()
        if self.on_end is not None:
            self.on_end()

    def _piece(self, token: int) -> str:
        """The text this token adds (held back mid-character)."""
        raise NotImplementedError

    def _tail(self) -> str:
        """Text of the tokens taken that was not yet accepted (a partial character)."""
        return ""

    def _release(self) -> None:
        """Free what the runtime's row holds."""

    def _add(self, text: str) -> None:
        if text:
            self.text += text
            if self.on_text is not None:
                self.on_text(text)
