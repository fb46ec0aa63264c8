"""Continuous batching for causal transformers models: requests join a running batch and leave.

The server's scheduler (`serve.batching.BatchedModel`) hands rows in as they come. A joining
row reads its prompt in a cache of its own, `chunk` tokens a step (one forward each), so the
rows already running go on making tokens meanwhile; once its prompt is in, it samples its
first token and its cache joins the batch's: every row's keys and values left-padded to one
length, the padding masked out. Each step then decodes the next token of every running row
in one forward, so the weights are read once for all of them. A row leaves at its
end-of-sequence token, stop string, budget or when cancelled, its cache rows with it, and
the columns no remaining row attends to are trimmed away.

Each row samples with its own generator seeded with its request's seed (the sampler of
`row_decode`, which `generate` uses), so a reply is the one its prompt gets alone, up to
float rounding: the matrix products run at the batch's width.

Models whose cache layers are all full-attention `DynamicLayer`s can join (Llama, Qwen2,
SmolLM2, ...). A model with sliding-window layers (StarCoder2, Gemma 2/3) joins too when its
served context fits in its narrowest window: every row's keys then stay in view, so plain
full-attention caches hold exactly what its own would (its masks still apply the window, a
no-op there). Served past its window, or an encoder-decoder, it runs one model copy per
request (`joining_blocker` says why).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from honed.runtime import row_decode
from honed.runtime.batch_row import BatchRow
from honed.runtime.transformers_hooks import DECODE, grown_text

Admit = Callable[[int, bool], list[Any] | None]


@dataclass
class JoinRow(BatchRow):
    """One prompt's generation on transformers: its sampler, its new ids and their text."""

    pick: Callable[[torch.Tensor, list[int]], torch.Tensor] | None = None
    tokenizer: Any = None
    ids: list[int] = field(default_factory=list)
    sent: int = 0  # characters of the decoded ids already accepted
    cache: DynamicCache | None = None  # its own, while its prompt is read

    def _piece(self, token: int) -> str:
        self.ids.append(token)
        piece, self.sent = grown_text(self.tokenizer, self.ids, self.sent)
        return piece

    def _tail(self) -> str:
        return self.tokenizer.decode(self.ids, **DECODE)[self.sent :]

    def _release(self) -> None:
        self.cache = None


def joining_blocker(model: Any, context: int) -> str | None:
    """Why rows cannot join the model's running batch at this served context, or None: honed's
    row decoder must run it, and every cache layer must be full attention (its keys can be
    left-padded) or a sliding window no narrower than the context."""
    if not row_decode.supports_row_decode(model):
        return "honed's row decoder does not run this model"
    layers = DynamicCache(config=model.config).layers
    if any(type(layer) not in (DynamicLayer, DynamicSlidingWindowLayer) for layer in layers):
        return "its cache is not a plain key/value cache"
    window = min((layer.sliding_window for layer in layers if type(layer) is not DynamicLayer),
                 default=None)  # fmt: skip
    if window is not None and window < context:
        return (
            f"it attends within {window} tokens and is served with a context of {context}: "
            f"--n-ctx {window} (or less) lets its requests decode together"
        )
    return None


class JoinDecoder:
    """Decodes the server's rows for one causal transformers model, joining them as they come."""

    def __init__(self, model: Any, eos: set[int]) -> None:
        self.model = model
        self.eos = eos
        self.cells = 0
        self.seqs = 0
        self._keep_last = (
            {"logits_to_keep": 1} if row_decode.accepts(model, "logits_to_keep") else {}
        )

    def reserve(self, cells: int, seqs: int) -> int:
        """Rows of up to `cells` tokens, `seqs` at a time (the cache grows as they need)."""
        self.cells, self.seqs = cells, seqs
        return seqs

    def kv_bytes(self) -> int:
        """The most the KV cache can take: K and V of every layer for every cell of every row."""
        config = self.model.config.get_text_config()
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        element = torch.empty((), dtype=self.model.dtype).element_size()  # the compute dtype
        per_token = config.num_hidden_layers * kv_heads * head_dim * 2 * element
        return self.cells * self.seqs * per_token

    def serve(self, width: int, admit: Admit, chunk: int | None) -> None:
        """Decode the rows `admit(free lanes, idle)` lets in until it returns None."""
        batch = Batch()
        joining: list[JoinRow] = []
        try:
            with torch.inference_mode():
                while True:
                    new = admit(width - len(batch) - len(joining), not batch and not joining)
                    if new is None:
                        return
                    joining += new
                    if batch:
                        self._step(batch)
                    joining = [row for row in joining if self._read(row, chunk, batch)]
        except BaseException as exc:
            for row in [*batch.running(), *joining]:
                row.error = exc  # their requests get the error
                row.close()
            raise

    def _step(self, batch: Batch) -> None:
        """Decode the next token of every running row; the rows that end leave the batch."""
        rows, cache = batch.rows, batch.cache
        logits = row_decode.forward(self.model, rows, cache, self._keep_last)
        chosen = torch.cat([row.pick(logits[j : j + 1], [0]) for j, row in enumerate(rows.index)])
        tokens = zip(rows.index, chosen.tolist(), strict=True)
        goes_on = [row.take(token, token in self.eos) for row, token in tokens]
        for row, on in zip(rows.index, goes_on, strict=True):
            if not on:
                row.close()
        rows.advance(chosen)
        batch.keep([j for j, on in enumerate(goes_on) if on])

    def _read(self, row: JoinRow, chunk: int | None, batch: Batch) -> bool:
        """Feed the row the next part of its prompt; once all of it is in, sample its first
        token and move it into the batch (or close it). Returns whether it is still joining."""
        if row.cancelled:
            row.close()
            return False
        start = row.fed
        row.fed = len(row.tokens) if chunk is None else min(start + chunk, len(row.tokens))
        if row.cache is None:
            row.cache = DynamicCache()  # full-attention layers (see the module's docstring)
        part = prompt_part(row.tokens, start, row.fed, self.model.device)
        logits = row_decode.forward(self.model, part, row.cache, self._keep_last)
        if row.fed < len(row.tokens):
            return True
        token = row.pick(logits, [0])
        if row.take(int(token), int(token) in self.eos):
            batch.join(row, token)
        else:
            row.close()
        return False


def prompt_part(tokens: list[int], start: int, end: int, device: Any) -> row_decode.Rows:
    """Inputs for prompt tokens start..end of one row whose first `start` are in its cache."""
    ids = torch.tensor([tokens[start:end]], device=device)
    mask = torch.ones(1, end, dtype=torch.long, device=device)
    positions = torch.arange(start, end, device=device)[None]
    return row_decode.Rows([0], ids, mask, positions)


class Batch:
    """The running rows (`rows.index` holds the JoinRows) and their shared, left-padded cache."""

    def __init__(self) -> None:
        self.rows: row_decode.Rows | None = None
        self.cache: DynamicCache | None = None

    def __len__(self) -> int:
        return len(self.running())

    def running(self) -> list[JoinRow]:
        return [] if self.rows is None else self.rows.index

    def join(self, row: JoinRow, token: torch.Tensor) -> None:
        """Add a row whose prompt is in its own cache and whose first token is `token`."""
        n = len(row.tokens)
        device = token.device
        new = row_decode.Rows(
            [row],
            token.view(1, 1),
            torch.ones(1, n + 1, dtype=torch.long, device=device),
            torch.tensor([[n]], device=device),
        )
        cache, row.cache = row.cache, None
        if self.rows is None:
            self.rows, self.cache = new, cache
            return
        width = max(self.rows.mask.shape[1], n + 1)
        for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
            mine.keys = stack_left(mine.keys, theirs.keys, width - 1)
            mine.values = stack_left(mine.values, theirs.values, width - 1)
        old = self.rows
        old.index.append(row)
        old.tokens = torch.cat([old.tokens, new.tokens])
        old.mask = torch.cat([pad_mask(old.mask, width), pad_mask(new.mask, width)])
        old.positions = torch.cat([old.positions, new.positions])

    def keep(self, keep: list[int]) -> None:
        """Keep only the rows at these places; trim the columns no row attends to any more."""
        if not keep:
            self.rows = self.cache = None
            return
        self.rows.keep(keep, self.cache)
        past = self.rows.mask[:, :-1]
        used = past.any(dim=0).nonzero()
        start = int(used[0]) if len(used) else past.shape[1]
        if start:
            self.rows.mask = self.rows.mask[:, start:]
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[..., start:, :], layer.values[..., start:, :]


def stack_left(first: torch.Tensor, second: torch.Tensor, length: int) -> torch.Tensor:
    """Keys or values [rows, heads, n, dim] of two groups of rows, each zero-padded on the
    left to `length` positions, one group after the other."""
    return torch.cat([F.pad(s, (0, 0, length - s.shape[-2], 0)) for s in (first, second)])


def pad_mask(mask: torch.Tensor, length: int) -> torch.Tensor:
    """An attention mask [rows, n] padded with zeros (not attended) on the left to `length`."""
    return F.pad(mask, (length - mask.shape[1], 0))
