"""Batched decoding for the llama.cpp backend: several prompts share one llama.cpp context.

Each prompt is its own sequence with its own KV stream, and each step decodes the next token
of every unfinished row in one `llama_decode` call, so the weights are read once per step
for the whole batch (on a 2-core CPU, 8 rows decode about twice the tokens per second of one:
`benchmarks/llamacpp_batch_speed.py`). A row leaves the batch, and its cache cells are freed,
at its end-of-generation token, a stop string, when `params.finished` says its text is
complete, or at its token budget.

Each row samples with its own llama.cpp sampler chain seeded like the one-prompt path
(top-p, then temperature, then a seeded draw; greedy at temperature 0) and attends only over
its own KV stream (with one unified cache, rows attend over a shared range of cells, and a
row's greedy text changed with the other prompts of its batch). So a completion depends on
its prompt, the settings and the seed, up to float rounding: the matrix products run at the
batch's width, and some of llama.cpp's CPU kernels (such as its repacked K-quant ones) sum
in another order at another width, so where two tokens are near-tied a row can take another
turn than alone (3 of 16 greedy HumanEval replies of Qwen2.5-Coder-1.5B Q4_K_M in the
benchmark; none of SmolLM2's Q4_1 in the tests).
"""

from __future__ import annotations

import codecs
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from llama_cpp import _internals, llama_cpp

from honed.runtime.base import Completion, GenerationParams
from honed.runtime.batch_row import BatchRow

CELL_STEP = 256  # KV cells per sequence grow in steps of this many (llama.cpp pads to 256)
KV_ELEMENT_BYTES = 2  # llama.cpp's default K and V cache type, f16


@contextlib.contextmanager
def token_batch(ctx: Any) -> Iterator[Any]:
    """A llama.cpp batch with room for every cell of ctx, freed on exit."""
    batch = _internals.LlamaBatch(n_tokens=ctx.n_ctx(), embd=0, n_seq_max=1, verbose=False)
    try:
        yield batch
    finally:
        batch.close()


@dataclass
class Row(BatchRow):
    """One prompt's generation on llama.cpp: its sampler chain and UTF-8 decoding."""

    sampler: Any = None  # llama_cpp._internals.LlamaSampler
    detokenize: Callable[[list[int]], bytes] | None = None  # the model's
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))

    def _piece(self, token: int) -> str:
        return self.decoder.decode(self.detokenize([token]))

    def _tail(self) -> str:
        return self.decoder.decode(b"", final=True)

    def _release(self) -> None:
        self.sampler.close()


def put(batch: Any, tokens: list[int], pos: int, seq: int) -> int:
    """Append tokens of one sequence from position pos, logits for the last only; return the
    last one's index in the batch (where its logits will be)."""
    raw = batch.batch
    for token in tokens:
        j = raw.n_tokens
        raw.token[j], raw.pos[j], raw.n_seq_id[j], raw.logits[j] = token, pos, 1, False
        raw.seq_id[j][0] = seq
        raw.n_tokens, pos = j + 1, pos + 1
    raw.logits[raw.n_tokens - 1] = True
    return raw.n_tokens - 1


def sampler_for(params: GenerationParams, seed: int) -> Any:
    """The chain the one-prompt path builds for these settings, without its no-op stages."""
    sampler = _internals.LlamaSampler()
    if params.temperature <= 0:
        sampler.add_greedy()
        return sampler
    sampler.add_top_p(params.top_p, 1)
    sampler.add_temp(params.temperature)
    sampler.add_dist(seed)
    return sampler


class BatchDecoder:
    """Owns the multi-sequence context (sized for the largest batch seen) of one model."""

    def __init__(self, llm: Any, vocab: Any) -> None:
        self.llm = llm
        self.vocab = vocab
        self.ctx: Any = None
        self.cells = 0
        self.seqs = 0

    def reserve(self, cells: int, seqs: int) -> int:
        """Make the context for `seqs` rows of up to `cells` tokens each; how many it takes."""
        self.context(cells, seqs)
        return self.seqs

    def serve(
        self, width: int, admit: Callable[[int, bool], list[Row] | None], chunk: int | None
    ) -> None:
        """Decode the rows `admit` lets in, `width` at a time, until it returns None (the
        server's scheduler; `reserve` first)."""
        with token_batch(self.ctx) as batch:
            self.decode(self.ctx, batch, width, admit, chunk)

    def run(self, rows: list[Row], width: int) -> list[Completion]:
        """Generate every row to its end, at most `width` at a time: a row that ends makes
        room for the next waiting one. The completions share the call's timings."""
        started = time.perf_counter()
        width = max(1, min(width, len(rows)))
        ctx = self.context(max(len(r.tokens) + r.budget for r in rows), width)
        waiting = deque(rows)

        def admit(free: int, idle: bool) -> list[Row] | None:
            if idle and not waiting:
                return None
            return [waiting.popleft() for _ in range(min(free, len(waiting)))]

        try:
            with token_batch(ctx) as batch:
                first = self.decode(ctx, batch, width, admit)
        finally:
            for row in rows:
                row.close()
        total = time.perf_counter() - started
        return [self._completion(row, (first or started + total) - started, total) for row in rows]

    def decode(
        self,
        ctx: Any,
        batch: Any,
        width: int,
        admit: Callable[[int, bool], list[Row] | None],
        chunk: int | None = None,
    ) -> float:
        """Decode rows until `admit` returns None; returns when the first token came.

        Each call to llama.cpp decodes the live rows' last tokens and the prompts of the rows
        `admit(free lanes, idle)` lets in (idle: no row is live; it may block until one comes).
        A row ends at its end-of-generation token, stop string, budget or when cancelled: its
        cells are freed, it is closed, and its lane takes the next row. With `chunk`, a prompt
        goes in `chunk` tokens a step (chunked prefill), so the rows already running go on
        making tokens while a long prompt is read instead of waiting for all of it."""
        llama_cpp.llama_memory_clear(ctx.memory, True)
        live: list[Row] = []
        try:
            return self._steps(ctx, batch, width, admit, live, chunk)
        except BaseException as exc:
            for row in live:  # their requests get the error
                row.error = exc
                row.close()
            raise

    def _steps(
        self,
        ctx: Any,
        batch: Any,
        width: int,
        admit: Callable[[int, bool], list[Row] | None],
        live: list[Row],
        chunk: int | None,
    ) -> float:
        free = list(range(width - 1, -1, -1))
        lane: dict[int, int] = {}  # id(row) -> its sequence
        chosen: dict[int, int] = {}
        first = 0.0
        while True:
            new = admit(len(free), not live)
            if new is None:
                return first
            for row in new:
                lane[id(row)] = free.pop()
                live.append(row)
            if not live:
                continue
            parts = [(lane[id(r)], *self._next_input(r, chosen, chunk), r) for r in live]
            # in sequence order: llama.cpp splits a batch whose sequences come out of order
            # into many small ones (each step much slower)
            batch.reset()
            at = {id(r): put(batch, t, pos, seq) for seq, t, pos, r in sorted(parts, key=_lane)}
            ctx.decode(batch)
            ready = [r for r in live if r.fed == len(r.tokens)]  # its whole prompt is in
            chosen |= {id(r): r.sampler.sample(ctx, at[id(r)]) for r in ready}
            first = first or (time.perf_counter() if ready else 0.0)
            for row in [r for r in ready if not self._take(r, chosen[id(r)])]:
                llama_cpp.llama_memory_seq_rm(ctx.memory, lane[id(row)], -1, -1)
                free.append(lane.pop(id(row)))
                live.remove(row)
                row.close()

    def _next_input(
        self, row: Row, chosen: dict[int, int], chunk: int | None
    ) -> tuple[list[int], int]:
        """What the row feeds this step and from which position: the next `chunk` tokens of
        its prompt (all of it without a chunk), then its last sampled token."""
        if row.fed < len(row.tokens):
            start = row.fed
            row.fed = len(row.tokens) if chunk is None else min(start + chunk, len(row.tokens))
            return row.tokens[start : row.fed], start
        return [chosen[id(row)]], self._next_pos(row)

    @staticmethod
    def _next_pos(row: Row) -> int:
        return len(row.tokens) + row.count - 1

    def _take(self, row: Row, token: int) -> bool:
        """The row takes its token (an end-of-generation one ends it); whether it goes on."""
        return row.take(token, llama_cpp.llama_vocab_is_eog(self.vocab, token))

    def context(self, cells: int, seqs: int) -> Any:
        """A context with room for `cells` KV cells in each of `seqs` sequences (made when
        needed). Each sequence has its own KV stream, so a row's attention never spans
        another row's cells: its logits are those it would get alone."""
        if self.ctx is None or cells > self.cells or seqs > self.seqs:
            if self.ctx is not None:
                self.ctx.close()
            self.cells = max(self.cells, -(-cells // CELL_STEP) * CELL_STEP)
            self.seqs = min(max(self.seqs, seqs), llama_cpp.llama_max_parallel_sequences())
            params = llama_cpp.llama_context_params.from_buffer_copy(self.llm.context_params)
            params.n_ctx = params.n_batch = self.cells * self.seqs
            params.n_seq_max = self.seqs
            params.kv_unified = False
            self.ctx = _internals.LlamaContext(model=self.llm._model, params=params, verbose=False)
        return self.ctx

    def kv_bytes(self) -> int:
        """Bytes the context's KV cache takes: K and V (f16) of every layer for every cell
        of every sequence, allocated when the context is made."""
        model = self.llm.model
        layers = llama_cpp.llama_model_n_layer(model)
        kv_heads = llama_cpp.llama_model_n_head_kv(model)
        arch = self.llm.metadata.get("general.architecture", "")
        heads = max(1, llama_cpp.llama_model_n_head(model))
        fallback = llama_cpp.llama_model_n_embd(model) // heads
        dims = sum(
            int(self.llm.metadata.get(f"{arch}.attention.{part}_length", fallback))
            for part in ("key", "value")
        )
        return self.cells * self.seqs * layers * kv_heads * dims * KV_ELEMENT_BYTES

    @staticmethod
    def _completion(row: Row, ttft: float, total: float) -> Completion:
        reason = "stop" if row.ended else "length"
        return Completion(row.text, len(row.tokens), row.count, ttft, total, finish_reason=reason)


def _lane(part: tuple[int, list[int], int, Row]) -> int:
    return part[0]
