"""Whole fine-tune runs on tiny random models: full, LoRA, QLoRA, seq2seq, resume, NaN stop."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from honed.artifacts import read_manifest, tmp_dir_for
from honed.config import FinetuneConfig
from honed.errors import HonedError, NonFiniteLossError
from honed.models import load
from honed.train.finetune import Interrupted, finetune
from honed.train.plots import read_metrics

pytestmark = pytest.mark.integration
FAST = {
    "logging_steps": 1,
    "eval_steps": 10,
    "save_steps": 10,
    "samples": 2,
    "sample_max_new_tokens": 8,
    "report_to": "none",
    "batch_size": 8,
}


def run(model: Path, data: Path, out: Path, **kw) -> dict:
    cfg = FinetuneConfig(model=str(model), data=str(data), output=out, **{**FAST, **kw})
    result = finetune(cfg)
    assert result is not None
    return result.manifest


def train_losses(out: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r]


def assert_falls(out: Path) -> None:
    losses = train_losses(out)
    assert len(losses) >= 20
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 0.3, losses


@pytest.mark.parametrize(("method", "lr"), [("full", 3e-3), ("lora", 1e-2), ("qlora", 1e-2)])
def test_causal_methods_train_and_write_artifact(tiny_causal, arith_data, tmp_path, method, lr):
    out = tmp_path / method
    manifest = run(
        tiny_causal,
        arith_data,
        out,
        method=method,
        max_steps=24,
        learning_rate=lr,
        report_to="tensorboard",
    )
    assert_falls(out)
    assert manifest["metrics"]["eval_loss_after"] < manifest["metrics"]["eval_loss_before"]
    assert 0 <= manifest["metrics"]["cpu_others"] <= 1  # CPU time taken while it trained
    weights = "model.safetensors" if method == "full" else "adapter_model.safetensors"
    for name in (
        weights,
        "manifest.json",
        "metrics.jsonl",
        "loss.png",
        "samples.md",
        "tokenizer.json",
    ):
        assert (out / name).is_file(), name
    assert any(p.name.startswith("events.out.tfevents") for p in (out / "tensorboard").iterdir())
    assert manifest["files"][weights] and manifest["config"]["method"] == method
    assert manifest["kind"] == ("model" if method == "full" else "adapter")
    assert "transformers" in manifest["versions"] and not tmp_dir_for(out).exists()
    assert not (out / "checkpoints").exists() and not (out / "training_args.bin").exists()
    samples = (out / "samples.md").read_text()
    assert samples.count("**Before**") == 2 and samples.count("**After**") == 2


def test_seq2seq_lora_and_full(tiny_seq2seq, arith_data, tmp_path):
    for method, lr in (("lora", 1e-2), ("full", 3e-3)):
        out = tmp_path / method
        manifest = run(tiny_seq2seq, arith_data, out, method=method, max_steps=24, learning_rate=lr)
        assert manifest["task"] == "seq2seq"
        assert_falls(out)


def test_qlora_merge_uses_dequantized_base(tiny_causal, arith_data, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from honed.models.merge import dequantized_base
    from honed.models.resolve import resolve

    out = tmp_path / "q"
    run(tiny_causal, arith_data, out, method="qlora", max_steps=12, learning_rate=1e-2, merge=True)
    merged = AutoModelForCausalLM.from_pretrained(out / "merged")
    reference = PeftModel.from_pretrained(
        dequantized_base(resolve(str(tiny_causal)), "float32", False), out
    )
    ids = torch.tensor([[5, 17, 40, 60, 80]])
    with torch.no_grad():
        a, b = merged(ids).logits, reference(ids).logits
    assert torch.allclose(a, b, atol=1e-4)
    assert read_manifest(out / "merged")["parent"]["path"] == str(out.resolve())
    plain = AutoModelForCausalLM.from_pretrained(tiny_causal)
    w_plain = plain.model.layers[0].mlp.up_proj.weight
    w_deq = (
        dequantized_base(resolve(str(tiny_causal)), "float32", False)
        .model.layers[0]
        .mlp.up_proj.weight
    )
    assert not torch.equal(w_plain, w_deq)  # the base really was dequantized from NF4


def test_resume_matches_uninterrupted_run(tiny_causal, arith_data, tmp_path, interrupt_after):
    kw = {"method": "lora", "max_steps": 20, "learning_rate": 1e-2, "save_steps": 5}
    full_out = tmp_path / "full"
    run(tiny_causal, arith_data, full_out, **kw)
    out = tmp_path / "resumed"
    interrupt_after(8)
    with pytest.raises(Interrupted):
        run(tiny_causal, arith_data, out, **kw)
    work = tmp_dir_for(out)
    assert (work / "checkpoints" / "checkpoint-8" / "trainer_state.json").is_file()
    interrupt_after(None)
    run(tiny_causal, arith_data, out, resume=True, **kw)
    a, b = train_losses(full_out), train_losses(out)
    assert len(a) == len(b) == 20
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-4, [
        (i, x, y) for i, (x, y) in enumerate(zip(a, b, strict=True)) if abs(x - y) > 1e-4
    ]


class Poison(TrainerCallback):
    """Makes every weight NaN from a given step on, as a diverging run would."""

    def __init__(self, step: int) -> None:
        self.step, self.model = step, None

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step >= self.step and model is not None:
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(float("nan"))


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tiny_causal, arith_data, tmp_path):
    out = tmp_path / "nan"
    cfg = FinetuneConfig(
        model=str(tiny_causal),
        data=str(arith_data),
        output=out,
        method="full",
        max_steps=30,
        nan_patience=3,
        **{**FAST, "save_steps": 4},
    )
    with pytest.raises(NonFiniteLossError, match="checkpoint-8"):
        finetune(cfg, extra_callbacks=[Poison(step=9)])
    work = tmp_dir_for(out)
    ckpts = sorted(p.name for p in (work / "checkpoints").iterdir() if p.name.startswith("check"))
    assert ckpts[-1] == "checkpoint-8" and not out.exists()
    from safetensors.torch import load_file

    weights = load_file(work / "checkpoints" / "checkpoint-8" / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())
    metrics = [json.loads(x) for x in (work / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("loss") != r.get("loss") for r in metrics)  # NaN was logged honestly


def test_wandb_offline_run_is_logged(tiny_causal, arith_data, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "wb"
    run(tiny_causal, arith_data, out, method="lora", max_steps=3, report_to="wandb,tensorboard")
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))
    assert "wandb/" not in " ".join(json.loads((out / "manifest.json").read_text())["files"])


def test_packed_batching_trains(tiny_causal, arith_data, tmp_path):
    out = tmp_path / "packed"
    manifest = run(tiny_causal, arith_data, out, method="lora", max_steps=20, learning_rate=1e-2,
                   batching="packed", max_length=64)  # fmt: skip
    assert manifest["config"]["batching"] == "packed"
    assert_falls(out)


def test_bf16_trains_on_cpu(tiny_causal, arith_data, tmp_path):
    """bf16 autocast is asked of the CPU too (TrainingArguments refuses bf16 without use_cpu
    when no GPU is there); the adapters stay fp32 and the loss falls as in fp32."""
    out = tmp_path / "bf16"
    manifest = run(tiny_causal, arith_data, out, method="lora", max_steps=24, learning_rate=1e-2,
                   dtype="bfloat16", samples=0)  # fmt: skip
    assert manifest["config"]["dtype"] == "bfloat16"
    assert_falls(out)
    adapters = load_file(out / "adapter_model.safetensors")
    assert {t.dtype for t in adapters.values()} == {torch.float32}


def test_full_bf16_keeps_float32_master_weights(tiny_causal, arith_data, tmp_path):
    """At a small learning rate each AdamW step is below half a bf16 step of most weights:
    pure bf16 weights would not move. Master weights in float32 add the steps up, and the
    model is saved in bf16 as asked."""
    out = tmp_path / "full-bf16"
    run(tiny_causal, arith_data, out, method="full", max_steps=20, learning_rate=5e-5,
        dtype="bfloat16", samples=0)  # fmt: skip
    before = load_file(tiny_causal / "model.safetensors")
    after = load_file(out / "model.safetensors")
    assert {t.dtype for t in after.values()} == {torch.bfloat16}
    name = "model.layers.0.mlp.down_proj.weight"
    start = before[name].to(torch.bfloat16)
    large = start.abs() > 0.016  # half a bf16 step there is at least 2 ** -14 > 5e-5
    moved = (after[name] != start)[large].float().mean()
    assert moved > 0.5, float(moved)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_bf16_on_a_cpu_without_native_bf16_is_warned_once(
    tiny_causal, arith_data, tmp_path, monkeypatch, caplog, method
):
    """Such a CPU converts every bf16 operand, many times slower than float32: the run says
    so once, whether the weights load in bf16 (LoRA) or only the compute autocasts (full);
    float32 on it, or bf16 on a CPU that computes it natively, says nothing."""

    def warnings_of(native: bool, dtype: str) -> int:
        monkeypatch.setattr(load, "cpu_has_native_bf16", lambda: native)
        load._warn_slow_bf16.cache_clear()
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            run(tiny_causal, arith_data, tmp_path / f"{native}-{dtype}", method=method,
                max_steps=1, dtype=dtype, samples=0)  # fmt: skip
        return sum("no native bf16" in r.getMessage() for r in caplog.records)

    assert warnings_of(False, "bfloat16") == 1
    assert warnings_of(False, "float32") == 0
    assert warnings_of(True, "bfloat16") == 0
    load._warn_slow_bf16.cache_clear()


class Scramble(TrainerCallback):
    """Ruins the weights at the end of one step: every validation loss after it is worse."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                for param in model.parameters():
                    param.add_(torch.randn_like(param) * 3)


def test_keep_best_keeps_the_step_with_the_lowest_validation_loss(
    tiny_causal, arith_data, tmp_path
):
    out = tmp_path / "best"
    cfg = FinetuneConfig(model=str(tiny_causal), data=str(arith_data), output=out, method="full",
                         max_steps=30, keep_best=True, save_total_limit=1, keep_checkpoints=True,
                         learning_rate=1e-3, **{**FAST, "save_steps": 25})  # fmt: skip
    manifest = finetune(cfg, extra_callbacks=[Scramble(step=15)]).manifest
    evals = {r["step"]: r["eval_loss"] for r in read_metrics(out / "metrics.jsonl")
             if "eval_loss" in r}  # fmt: skip
    assert sorted(evals) == [0, 10, 20, 30] and evals[10] < min(evals[20], evals[30])
    assert manifest["metrics"]["best_step"] == 10
    assert manifest["metrics"]["eval_loss_after"] == pytest.approx(evals[10])
    kept = load_file(out / "model.safetensors")  # the best step's weights, not the last's
    best = load_file(out / "checkpoints" / "checkpoint-10" / "model.safetensors")
    assert kept.keys() == best.keys() and all(torch.equal(kept[k], best[k]) for k in kept)
    assert (out / "checkpoints" / "checkpoint-30").is_dir()  # the limit of 1, and the best


def test_keep_best_refuses_a_run_without_validation_rows(tiny_causal, arith_data, tmp_path):
    out = tmp_path / "refused"
    cfg = FinetuneConfig(model=str(tiny_causal), data=str(arith_data), output=out,
                         max_steps=10, keep_best=True, **{**FAST, "val_fraction": 0.0})  # fmt: skip
    with pytest.raises(HonedError, match="--keep-best needs validation rows"):
        finetune(cfg)
    assert not out.exists() and not tmp_dir_for(out).exists()
