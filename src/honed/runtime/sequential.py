"""Shared plumbing for runtimes that generate one sequence at a time (llama.cpp, ONNX Runtime).

A subclass supplies `_prompt_tokens(prompt)` and `_pieces(tokens, params, tally)` (the decoded
text of each sampled token, counting tokens on the tally); this class turns them into the
Backend protocol's `generate` and `stream`, cut at stop strings, with token counts and timing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from honed.runtime.base import Completion, GenerationParams, Usage
from honed.runtime.text import StopFilter, filter_stream


@dataclass
class Tally:
    """What one generation cost: sampled tokens, when the first came, why it ended."""

    started: float
    prompt_tokens: int
    tokens: int = 0
    first_token_at: float | None = None
    ended: bool = False  # an end-of-generation token was sampled
    stopped: bool = False  # a stop string appeared

    def token(self) -> None:
        self.tokens += 1
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def fill(self, usage: Usage) -> None:
        """Copy the counts onto a caller's Usage."""
        usage.prompt_tokens = self.prompt_tokens
        usage.completion_tokens = self.tokens
        usage.finish_reason = "stop" if self.ended or self.stopped else "length"
        if self.first_token_at is not None:
            usage.ttft_s = self.first_token_at - self.started


class SequentialBackend:
    """generate and stream on top of a per-token piece generator."""

    def generate(self, prompts: list[str], params: GenerationParams) -> list[Completion]:
        """Complete each prompt in turn."""
        return [self._complete(prompt, params) for prompt in prompts]

    def stream(
        self, prompt: str, params: GenerationParams, usage: Usage | None = None
    ) -> Iterator[str]:
        """Yield the completion's text as it grows, cut at the first stop string."""
        started = time.perf_counter()
        tokens = self._prompt_tokens(prompt)
        tally = Tally(started, len(tokens))
        try:
            yield from self._run(prompt, tokens, params, tally)
        finally:
            if usage is not None:
                tally.fill(usage)

    def _prompt_tokens(self, prompt: str) -> list[int]:
        raise NotImplementedError

    def _pieces(self, tokens: list[int], params: GenerationParams, tally: Tally) -> Iterator[str]:
        raise NotImplementedError

    def _complete(self, prompt: str, params: GenerationParams) -> Completion:
        started = time.perf_counter()
        tokens = self._prompt_tokens(prompt)
        tally = Tally(started, len(tokens))
        text = "".join(self._run(prompt, tokens, params, tally))
        total = time.perf_counter() - started
        return Completion(
            text=text,
            prompt_tokens=tally.prompt_tokens,
            completion_tokens=tally.tokens,
            ttft_s=(tally.first_token_at or started + total) - started,
            total_s=total,
            finish_reason="stop" if tally.ended or tally.stopped else "length",
        )

    def _run(
        self, prompt: str, tokens: list[int], params: GenerationParams, tally: Tally
    ) -> Iterator[str]:
        """The completion's text, piece by piece, ending at a stop string, EOG, the budget, or
        when `params.finished` says the text so far is complete."""
        stops = StopFilter(params.stop)
        pieces = self._pieces(tokens, params, tally)
        text, done = "", False
        try:
            for piece in filter_stream(pieces, stops):
                yield piece
                text += piece
                if params.finished is not None and params.finished(prompt, text):
                    done = True
                    return
        finally:
            pieces.close()  # stops the runtime's token loop too
            tally.stopped = stops.stopped or done
