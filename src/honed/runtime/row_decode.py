"""Batched decoding for causal LMs that drops each row from the batch as soon as it finishes.

transformers' `generate` keeps a finished row in the batch until the last row is done, so one
runaway answer makes a whole batch run to the token budget. Here a row leaves the batch (and
the KV cache) at its end-of-sequence token or stop string, and each row samples from its own
generator seeded with the request's seed: a completion depends only on its prompt, the
settings and the seed, never on the batch it ran in (as with the llama.cpp backend).
Greedy picks and sampling (temperature, then nucleus) are those of `generate`.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache
from transformers.generation.logits_process import TopPLogitsWarper

from honed.runtime.base import GenerationParams


@dataclass
class Rows:
    """The rows still decoding: their original index, next input, mask and positions."""

    index: list[Any]  # each row's place in the caller's list (or the caller's row itself)
    tokens: torch.Tensor  # [rows, n] next input ids
    mask: torch.Tensor  # [rows, past + n] attention mask
    positions: torch.Tensor  # [rows, n] position ids

    def keep(self, keep: list[int], cache: DynamicCache) -> None:
        """Drop every row not in `keep` (positions in the current batch) from batch and cache."""
        if len(keep) == len(self.index):
            return
        at = torch.tensor(keep, device=self.mask.device)
        cache.batch_select_indices(at)
        self.index = [self.index[j] for j in keep]
        self.tokens, self.mask, self.positions = self.tokens[at], self.mask[at], self.positions[at]

    def advance(self, chosen: torch.Tensor) -> None:
        """Feed each row's chosen token next, one position further on."""
        self.tokens = chosen[:, None]
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(self.index), 1)], dim=1)
        self.positions = self.positions[:, -1:] + 1


@dataclass
class Decoded:
    """New token ids per prompt (end-of-sequence token included), and when the first came."""

    ids: list[list[int]]
    stopped: list[bool]  # ended on a stop string (or as finished)
    first_token_at: float | None = None
    steps: int = 0
    row_steps: int = field(default=0)  # rows decoded, summed over steps: the work done


def supports_row_decode(model: Any) -> bool:
    """Causal models whose forward takes a cache and explicit positions, with a cache whose
    every layer can drop rows (transformers' attention layers can; others use `generate`)."""
    if model.config.is_encoder_decoder or not (
        accepts(model, "past_key_values") and accepts(model, "position_ids")
    ):
        return False
    try:
        layers = DynamicCache(config=model.config).layers
    except Exception:  # a config the dynamic cache cannot lay out
        return False
    return all(hasattr(layer, "batch_select_indices") for layer in layers)


def make_sampler(params: GenerationParams, rows: int, device: torch.device) -> Callable:
    """pick(logits [rows, vocab], index) -> chosen ids: argmax, or a draw from each row's own
    generator after temperature and nucleus (top-p) filtering."""
    if params.temperature <= 0:
        return lambda logits, index: logits.argmax(dim=-1)
    top_p = TopPLogitsWarper(params.top_p) if params.top_p < 1.0 else None
    seeds = [params.seed] * rows if params.seed is not None else seeds_from_global(rows)
    generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]

    def pick(logits: torch.Tensor, index: list[int]) -> torch.Tensor:
        scores = logits / params.temperature
        if top_p is not None:
            scores = top_p(None, scores)
        probs = torch.softmax(scores, dim=-1)
        rows = zip(probs, index, strict=True)
        return torch.cat([torch.multinomial(p, 1, generator=generators[i]) for p, i in rows])

    return pick


def seeds_from_global(rows: int) -> list[int]:
    """Fresh seeds from torch's global generator (unseeded requests)."""
    return torch.randint(0, 2**63 - 1, (rows,)).tolist()


def decode(
    model: Any,
    inputs: dict[str, torch.Tensor],
    max_new: int,
    params: GenerationParams,
    *,
    eos: set[int],
    stopped: Callable[[int, list[int]], bool],
) -> Decoded:
    """Decode left-padded `inputs` up to max_new tokens per row; `stopped(row, ids)` says
    whether a row's new ids end in a stop string (or finish it otherwise)."""
    mask = inputs["attention_mask"]
    positions = (mask.long().cumsum(-1) - 1).masked_fill_(mask == 0, 1)
    batch = len(mask)
    rows = Rows(list(range(batch)), inputs["input_ids"], mask, positions)
    out = Decoded([[] for _ in range(batch)], [False] * batch)
    cache = DynamicCache(config=model.config)
    pick = make_sampler(params, batch, mask.device)
    keep_last = {"logits_to_keep": 1} if accepts(model, "logits_to_keep") else {}
    for step in range(max_new):
        logits = forward(model, rows, cache, keep_last)
        chosen = pick(logits, rows.index)
        if out.first_token_at is None:
            out.first_token_at = time.perf_counter()
        out.steps, out.row_steps = step + 1, out.row_steps + len(rows.index)
        keep = finish_rows(out, rows.index, chosen.tolist(), eos, stopped, last=step + 1 == max_new)
        if not keep:
            break
        rows.advance(chosen)
        rows.keep(keep, cache)
    return out


def forward(model: Any, rows: Rows, cache: DynamicCache, extra: dict) -> torch.Tensor:
    """The next-token logits (float32) of every row still decoding."""
    out = model(
        input_ids=rows.tokens,
        attention_mask=rows.mask,
        position_ids=rows.positions,
        past_key_values=cache,
        use_cache=True,
        **extra,
    )
    return out.logits[:, -1, :].to(dtype=torch.float32)


def finish_rows(
    out: Decoded,
    index: list[int],
    chosen: list[int],
    eos: set[int],
    stopped: Callable[[int, list[int]], bool],
    *,
    last: bool,
) -> list[int]:
    """Append each row's token; return the batch positions of the rows that go on."""
    keep = []
    for j, (row, token) in enumerate(zip(index, chosen, strict=True)):
        ids = out.ids[row]
        ids.append(token)
        out.stopped[row] = token not in eos and stopped(row, ids)
        if not (last or token in eos or out.stopped[row]):
            keep.append(j)
    return keep


def accepts(model: Any, name: str) -> bool:
    """Whether the model's forward takes a keyword argument `name`."""
    return name in inspect.signature(model.forward).parameters
