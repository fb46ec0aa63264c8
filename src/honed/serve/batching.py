"""Continuous batching for `honed serve`: one model decodes every running request.

A scheduler thread runs the backend's batch decoder (`llamacpp_batch` on llama.cpp, each
request in its own KV stream of one multi-sequence context; `row_join` on transformers, each
request a row of one left-padded cache). At each step the model decodes the next token of
every running row in one call, so the weights are read once per step for all of them; a new
prompt is read PREFILL_CHUNK tokens a step, so a long prompt does not stall the replies being
written. A row leaves the batch at its end (end of turn, stop string, max_tokens) or when its
client goes away, and a waiting request takes its lane at the next step. Each row samples
with its own seeded generator and attends only to its own tokens, so a reply is the one the
request gets alone, up to float rounding at near-ties (see `llamacpp_batch`).

`BatchedModel.stream` is the Backend's `stream`, callable from many threads at once; the
server's Engine hands the same object to each of its `max_concurrency` slots. Everything
else (chat template, tokenizer, context size) is the wrapped backend's, which says whether it
can batch (`can_batch`) and makes the rows (`batch_row`) and the decoder (`batch_decoder`:
`reserve(cells, rows)`, `serve(width, admit, chunk)`, `cells`, `kv_bytes()`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from honed.runtime.base import Completion, GenerationParams, Usage

log = logging.getLogger(__name__)
END = object()  # what a row's queue gets once the row is closed
PREFILL_CHUNK = 128  # prompt tokens a row feeds per step (serve --prefill-chunk)


class BatchedModel:
    """A backend whose streams share one batch, `width` rows at a time."""

    concurrent_streams = True  # several streams of one request may run at once

    def __init__(self, backend: Any, width: int, prefill_chunk: int | None = PREFILL_CHUNK) -> None:
        self.backend = backend
        self.prefill_chunk = prefill_chunk
        self._inbox: deque[Any] = deque()
        self._wake = threading.Condition()
        self._closing = self._freed = False
        self.decoder = backend.batch_decoder()
        self.width = self.decoder.reserve(backend.context_size, width)  # llama.cpp may cap it
        self.cells, self.kv_bytes = self.decoder.cells, self.decoder.kv_bytes()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="honed-batch")
        self._thread.start()

    def __getattr__(self, name: str) -> Any:
        if name == "backend":  # not set yet (or a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self.backend, name)  # name, model_ref, context_size, chat_prompt, ...

    def generate(self, prompts: list[str], params: GenerationParams) -> list[Completion]:
        """Complete every prompt through the batch, all at once (the wrapped backend's own
        generate would share the scheduler's context)."""

        def one(prompt: str) -> Completion:
            usage, start = Usage(), time.perf_counter()
            text = "".join(self.stream(prompt, params, usage))
            total = time.perf_counter() - start
            ttft = total if usage.ttft_s is None else usage.ttft_s
            return Completion(text, usage.prompt_tokens, usage.completion_tokens, ttft, total,
                              finish_reason=usage.finish_reason)  # fmt: skip

        with ThreadPoolExecutor(max(1, len(prompts))) as pool:
            return list(pool.map(one, prompts))

    def stream(
        self, prompt: str, params: GenerationParams, usage: Usage | None = None
    ) -> Iterator[str]:
        """Yield the completion's text as the batch makes it; closing the iterator early takes
        the row out of the batch at its next token."""
        started = time.perf_counter()
        row = self.backend.batch_row(prompt, params)  # a HonedError for a prompt too long
        out: queue.SimpleQueue[Any] = queue.SimpleQueue()
        row.on_text, row.on_end = out.put, lambda: out.put(END)
        with self._wake:
            if self._closing:
                row.close()
                raise RuntimeError("the model is shutting down")
            self._inbox.append(row)
            self._wake.notify()
        try:
            while (piece := out.get()) is not END:
                yield piece
            if row.error is not None:
                raise row.error
        finally:
            row.cancelled = True  # a no-op once it has ended
            if usage is not None:
                usage.prompt_tokens, usage.completion_tokens = len(row.tokens), row.count
                usage.finish_reason = "stop" if row.ended else "length"
                usage.ttft_s = None if row.first_at is None else row.first_at - started

    def close(self) -> None:
        """Let the running and waiting rows finish, stop the scheduler, free the model."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join()
        if not self._freed:  # every slot of the server closes this one model
            self._freed = True
            self.backend.close()

    def _admit(self, free: int, idle: bool) -> list[Any] | None:
        """Up to `free` waiting rows, skipping those whose client already left; when none is
        running, wait for one. None once closing with nothing left to run."""
        with self._wake:
            while idle and not self._inbox and not self._closing:
                self._wake.wait()
            if idle and not self._inbox:
                return None
            rows: list[Any] = []
            while self._inbox and len(rows) < free:
                row = self._inbox.popleft()
                if row.cancelled:
                    row.close()
                else:
                    rows.append(row)
            return rows

    def _loop(self) -> None:
        """Scheduler thread: decode until closed. A runtime failure ends the rows in the
        batch with that error (their requests fail) and the batch starts afresh."""
        while True:
            try:
                self.decoder.serve(self.width, self._admit, self.prefill_chunk)
                return
            except Exception:  # the rows in the batch got it; the server goes on
                log.exception("the model failed while decoding a batch")
