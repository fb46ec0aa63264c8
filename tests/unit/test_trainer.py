"""Trainer pieces: the compact fused LM head gives the same loss; checkpoint discovery."""

from __future__ import annotations

import json

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


class _FakeTrainer:
    def __init__(self, step: int, history: list[dict]) -> None:
        from types import SimpleNamespace

        self.state = SimpleNamespace(global_step=step, log_history=history, best_metric=None)
        self.args = SimpleNamespace(load_best_model_at_end=False)
        self.evaluations = 0

    def evaluate(self) -> dict:
        self.evaluations += 1
        return {"eval_loss": 9.0}


def test_final_eval_loss_reuses_an_eval_logged_at_the_last_step():
    from honed.train.finetune import final_eval_loss

    done = _FakeTrainer(16, [{"step": 8, "eval_loss": 2.0}, {"step": 16, "eval_loss": 1.5},
                             {"step": 16, "train_runtime": 3.0}])  # fmt: skip
    assert final_eval_loss(done) == 1.5 and done.evaluations == 0
    stale = _FakeTrainer(16, [{"step": 10, "eval_loss": 2.0}, {"step": 16, "loss": 1.0}])
    assert final_eval_loss(stale) == 9.0 and stale.evaluations == 1


def test_metrics_logger_skips_the_end_of_training_summary(tmp_path):
    from types import SimpleNamespace

    from honed.train.callbacks import MetricsLogger

    logger = MetricsLogger(tmp_path / "metrics.jsonl")
    state = SimpleNamespace(global_step=4, is_world_process_zero=True, num_input_tokens_seen=0)
    logger.on_log(None, state, None, logs={"train_runtime": 3.0, "epoch": 1.0})
    logger.on_log(None, state, None, logs={"eval_loss": 1.25, "epoch": 1.0})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [{"step": 4, "eval_loss": 1.25, "epoch": 1.0}]
