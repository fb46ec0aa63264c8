"""Hooks into transformers' `generate`: first-token timing, stop strings, streaming.

StepWatch is a stopping criterion that stamps the first new token and stops each row at its
first stop string; TextQueue is a streamer whose pieces add up to the decoded completion.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from transformers import StoppingCriteria
from transformers.generation.streamers import BaseStreamer

from honed.runtime.base import Finished
from honed.runtime.text import find_stop

DECODE = {"skip_special_tokens": True, "clean_up_tokenization_spaces": False}


def stop_window(stop: tuple[str, ...]) -> int:
    """How many trailing tokens surely hold a stop string that has just appeared."""
    return 4 * max((len(s) for s in stop), default=0) + 4


def stop_checker(
    tokenizer: Any, stop: tuple[str, ...], prompts: list[str], finished: Finished = None
) -> Callable[[int, list[int]], bool]:
    """ends(row, new ids): whether that row's completion now holds a stop string, or is
    finished by `finished(prompt, text)`."""
    window = stop_window(stop)

    def ends(row: int, ids: list[int]) -> bool:
        if stop and find_stop(tokenizer.decode(ids[-window:], **DECODE), stop) is not None:
            return True
        return finished is not None and finished(prompts[row], tokenizer.decode(ids, **DECODE))

    return ends


class StepWatch(StoppingCriteria):
    """Runs after every generated token: stamps the first one, stops rows at a stop string
    (or when `finished` says a row's text is complete).

    `stopped_at[row]` is the number of new tokens when that row stopped; setting `cancelled`
    stops every row at the next step (a stream whose reader went away).
    """

    def __init__(
        self,
        tokenizer: Any,
        stop: tuple[str, ...],
        prompts: list[str] | None = None,
        finished: Finished = None,
    ) -> None:
        self.active = bool(stop) or finished is not None
        self.ends = stop_checker(tokenizer, stop, prompts or [], finished)
        self.first_token_at: float | None = None
        self.start = 0
        self.stopped_at: dict[int, int] = {}
        self.cancelled = False

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        if self.first_token_at is None:
            if input_ids.is_cuda:
                torch.cuda.synchronize(input_ids.device)
            self.first_token_at = time.perf_counter()
            self.start = input_ids.shape[1] - 1
        if self.active and not self.cancelled:
            self._check_stops(input_ids)
        done = torch.full((input_ids.shape[0],), self.cancelled, dtype=torch.bool)
        done[list(self.stopped_at)] = True
        return done.to(input_ids.device)

    def _check_stops(self, input_ids: torch.LongTensor) -> None:
        n_new = input_ids.shape[1] - self.start
        for row, ids in enumerate(input_ids[:, self.start :].tolist()):
            if row not in self.stopped_at and self.ends(row, ids):
                self.stopped_at[row] = n_new


def grown_text(tokenizer: Any, ids: list[int], sent: int) -> tuple[str, int]:
    """What the decoded ids add past their first `sent` characters, and the new count; ''
    while the text ends mid-character (the rest of a multi-byte character is to come)."""
    text = tokenizer.decode(ids, **DECODE)
    if text.endswith("\ufffd"):
        return "", sent
    return text[sent:], max(sent, len(text))


class TextQueue(BaseStreamer):
    """A streamer for one sequence: queues the growth of the decoded text, token by token.

    Decoding the whole completion each time (instead of pieces) keeps the concatenated pieces
    equal to what `generate` returns, whatever the tokenizer does with leading spaces.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.sent = 0
        self.skip_prompt = True
        self.pieces: queue.Queue[str | None] = queue.Queue()

    def put(self, value: torch.Tensor) -> None:
        if self.skip_prompt:  # the first call carries the prompt (decoder start for seq2seq)
            self.skip_prompt = False
            return
        self.ids.extend(value.reshape(-1).tolist())
        piece, self.sent = grown_text(self.tokenizer, self.ids, self.sent)
        if piece:
            self.pieces.put(piece)

    def end(self) -> None:
        self._send(self.tokenizer.decode(self.ids, **DECODE))
        self.pieces.put(None)

    def _send(self, text: str) -> None:
        if len(text) > self.sent:
            self.pieces.put(text[self.sent :])
            self.sent = len(text)

    def __iter__(self) -> Iterator[str]:
        while (piece := self.pieces.get()) is not None:
            yield piece
