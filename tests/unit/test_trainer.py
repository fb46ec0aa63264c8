"""Trainer pieces: the compact fused LM head gives the same loss; checkpoint discovery."""

from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from honed.train.trainer import complete_checkpoints, latest_checkpoint, use_compact_lm_head


def test_compact_lm_head_same_loss_and_grads(tiny_causal):
    import trl.trainer.utils as tu
    from trl.trainer.utils import add_fused_lm_head

    model = AutoModelForCausalLM.from_pretrained(tiny_causal)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    model = get_peft_model(
        model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    )
    ids = torch.randint(0, 300, (3, 12))
    labels = ids.clone()
    labels[:, :5] = -100
    labels[2, 9:] = -100  # padding

    def loss_and_grad():
        model.zero_grad()
        out = model(input_ids=ids, labels=labels, fused_lm_head=True)
        loss = -out.log_probs.sum() / out.label_mask.sum()
        loss.backward()
        grad = next(p.grad for n, p in model.named_parameters() if "lora_A" in n)
        return loss.detach(), grad.clone()

    original = tu._use_triton
    try:
        full = loss_and_grad()
        use_compact_lm_head()
        assert tu._use_triton(torch.device("cpu")) is True
        compact = loss_and_grad()
    finally:
        tu._use_triton = original
    assert torch.allclose(full[0], compact[0], atol=1e-6)
    assert torch.allclose(full[1], compact[1], atol=1e-6)


def test_only_complete_checkpoints_count(tmp_path):
    for step, complete in ((5, True), (10, True), (15, False)):
        ckpt = tmp_path / f"checkpoint-{step}"
        ckpt.mkdir()
        if complete:
            (ckpt / "trainer_state.json").write_text("{}")
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["checkpoint-5", "checkpoint-10"]
    assert latest_checkpoint(tmp_path).endswith("checkpoint-10")
