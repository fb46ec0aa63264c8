"""The student's LM head runs only where the loss looks, and the loss does not change."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from honed.distill.kd import next_tokens, scored_forward
from honed.distill.losses import distill_loss

IGNORE = -100


def test_each_position_predicts_the_next_label():
    labels = torch.tensor([[IGNORE, IGNORE, 5, 6], [IGNORE, 7, 8, IGNORE]])
    expected = torch.tensor([[IGNORE, 5, 6, IGNORE], [7, 8, IGNORE, IGNORE]])
    assert torch.equal(next_tokens(labels), expected)


@pytest.fixture(scope="module")
def student(tiny_llama) -> torch.nn.Module:
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    return get_peft_model(tiny_llama(50), lora).eval()


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


def loss(student, trim: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids, mask, labels, teacher_ids, teacher_logits = batch()
    out, logits, keep = scored_forward(student, ids, mask, labels, trim)
    value, _ = distill_loss(
        logits, next_tokens(labels)[keep], teacher_ids[keep], teacher_logits[keep], alpha=0.5
    )
    return value, logits, out.logits


def test_the_head_runs_only_where_the_loss_looks_through_a_peft_wrapper(student):
    with torch.no_grad():
        full, full_logits, full_out = loss(student, trim=False)
        trimmed, logits, out = loss(student, trim=True)
    scored = 5 + 1  # row 0 predicts labels 4..8, row 1 label 6 (then padding)
    assert full_out.shape == (2, 9, 50) and out.shape == logits.shape == (scored, 50)
    torch.testing.assert_close(logits, full_logits)
    torch.testing.assert_close(trimmed, full)
