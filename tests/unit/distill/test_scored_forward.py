"""The student's LM head runs only where the loss looks, and the loss does not change."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from honed.distill.kd import first_scored, scored_forward
from honed.distill.losses import distill_loss

IGNORE = -100


def test_first_scored_is_the_earliest_position_predicting_a_label():
    labels = torch.tensor(
        [
            [IGNORE, IGNORE, IGNORE, 5, 6, IGNORE],  # position 2 predicts 5
            [IGNORE, IGNORE, IGNORE, IGNORE, 7, 8],  # position 3 predicts 7
        ]
    )
    assert first_scored(labels) == 2
    assert first_scored(torch.full((2, 4), IGNORE)) == 0  # nothing scored: keep every position
    assert first_scored(torch.tensor([[1, 2, 3]])) == 0  # the first token is never predicted


@pytest.fixture(scope="module")
def student() -> torch.nn.Module:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    return get_peft_model(LlamaForCausalLM(config), lora).eval()


def batch() -> tuple[torch.Tensor, ...]:
    torch.manual_seed(1)
    ids = torch.randint(0, 50, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # right padding
    labels = ids.clone()
    labels[0, :4] = IGNORE  # prompts
    labels[1, :6] = IGNORE
    labels[mask == 0] = IGNORE
    teacher_ids = torch.stack([torch.randperm(50)[:5] for _ in range(18)]).view(2, 9, 5)
    return ids, mask, labels, teacher_ids, torch.randn(2, 9, 5)


def loss(student, trim: bool) -> tuple[torch.Tensor, int, int]:
    ids, mask, labels, teacher_ids, teacher_logits = batch()
    out, start = scored_forward(student, ids, mask, labels, trim)
    value, _ = distill_loss(
        out.logits[:, :-1],
        labels[:, start + 1 :],
        teacher_ids[:, start:-1],
        teacher_logits[:, start:-1],
        alpha=0.5,
    )
    return value, start, out.logits.shape[1]


def test_trimmed_logits_give_the_same_loss_through_a_peft_wrapper(student):
    with torch.no_grad():
        full, full_start, full_width = loss(student, trim=False)
        trimmed, start, width = loss(student, trim=True)
    assert (full_start, full_width) == (0, 9)
    assert (start, width) == (3, 6)  # row 0's prompt ends first: position 3 predicts label 4
    torch.testing.assert_close(trimmed, full)
