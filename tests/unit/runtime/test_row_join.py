"""The running batch of `row_join`: rows of other lengths join a left-padded cache and leave
it, and the columns no row attends to any more are trimmed (small tensors, no model)."""

from __future__ import annotations

import torch
from transformers import DynamicCache, LlamaConfig

from honed.runtime.row_join import Batch, JoinRow
from honed.runtime.text import StopFilter

CONFIG = LlamaConfig(num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                     hidden_size=8, intermediate_size=16, vocab_size=32)  # fmt: skip


def prompt_row(n: int, fill: float) -> tuple[JoinRow, torch.Tensor]:
    """A row whose n prompt tokens are in its own cache (keys and values all `fill`)."""
    row = JoinRow("p", list(range(n)), 8, StopFilter(()))
    row.cache = DynamicCache(config=CONFIG)
    for layer in range(2):
        states = torch.full((1, 1, n, 4), fill)
        row.cache.update(states, states.clone(), layer)
    return row, torch.tensor([100 + n])


def test_rows_join_left_padded_and_leave_with_unused_columns_trimmed() -> None:
    batch = Batch()
    for n, fill in ((3, 1.0), (5, 2.0), (2, 3.0)):
        batch.join(*prompt_row(n, fill))
    rows = batch.rows
    assert rows.mask.tolist() == [[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1]]
    assert rows.tokens.view(-1).tolist() == [103, 105, 102]  # each row's first sampled token
    assert rows.positions.view(-1).tolist() == [3, 5, 2]  # right after its own prompt
    keys = batch.cache.layers[1].keys[:, 0, :, 0]
    assert keys.tolist() == [[0, 0, 1, 1, 1], [2, 2, 2, 2, 2], [0, 0, 0, 3, 3]]
    assert batch.cache.layers[0].values.shape == (3, 1, 5, 4)
    batch.keep([0, 2])  # the longest row leaves: two columns no one attends to any more
    assert batch.rows.mask.tolist() == [[1, 1, 1, 1], [0, 1, 1, 1]]
    assert batch.cache.layers[1].keys[:, 0, :, 0].tolist() == [[1, 1, 1], [0, 3, 3]]
    assert [row.tokens for row in batch.running()] == [[0, 1, 2], [0, 1]]
    batch.keep([])
    assert len(batch) == 0 and batch.cache is None


def test_a_longer_row_joining_pads_the_running_rows() -> None:
    batch = Batch()
    batch.join(*prompt_row(2, 1.0))
    batch.join(*prompt_row(4, 2.0))
    assert batch.rows.mask.tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert batch.cache.layers[0].keys[:, 0, :, 0].tolist() == [[0, 0, 1, 1], [2, 2, 2, 2]]
