"""Build the HF/TRL trainer for a run: SFTTrainer for causal LMs, Seq2SeqTrainer for T5.

honed adds two things to the stock trainers through a small mixin: each micro-batch loss is
checked for finiteness, and checkpoints are written to a staging folder and renamed into
place, so a checkpoint directory either is complete or does not exist.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import (
    DataCollatorForSeq2Seq,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    Trainer,
)
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
from trl import SFTConfig, SFTTrainer

from honed.config import FinetuneConfig
from honed.data.format import Example, answer_text
from honed.errors import HonedError
from honed.train.callbacks import RunFlags

STATE_FILE = "trainer_state.json"


def use_compact_lm_head() -> None:
    """Make TRL's fused LM head project only the positions that carry a label, on CPU too.

    TRL 1.16 computes the loss through a chunked, fused LM head. On CUDA it selects the
    label-bearing rows first; elsewhere it projects every position (prompt and padding too)
    and masks the result. The selection is the same math on any device, and with the loss
    on the answer only it skips about half of the vocabulary projection, the largest single
    matmul of a small model. Measured in benchmarks/finetune_throughput.py.
    """
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None or getattr(original, "honed_compact", False):
        return

    def compact(device: torch.device) -> bool:
        return device.type == "cpu" or original(device)

    compact.honed_compact = True  # type: ignore[attr-defined]
    trl_utils._use_triton = compact


class HonedTrainerMixin:
    """Finite-loss observation and atomic checkpoints for any HF Trainer subclass."""

    honed_flags: RunFlags
    _honed_staging: str | None = None

    def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None) -> Any:
        loss = super().training_step(model, inputs, num_items_in_batch)  # type: ignore[misc]
        self.honed_flags.observe_loss(loss)
        return loss

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        sampler = super()._get_train_sampler(train_dataset)  # type: ignore[misc]
        if isinstance(sampler, LengthGroupedSampler):
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed  # type: ignore[attr-defined]
            return SeededLengthGroupedSampler(sampler, seed)
        return sampler

    def _get_output_dir(self, trial: Any) -> str:
        return self._honed_staging or super()._get_output_dir(trial)  # type: ignore[misc]

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        args = self.args  # type: ignore[attr-defined]
        if args.world_size > 1:  # ranks save collectively; keep the stock behaviour
            return super()._save_checkpoint(model, trial)  # type: ignore[misc]
        root = args.output_dir
        self._honed_staging = os.path.join(root, ".staging")
        try:
            super()._save_checkpoint(model, trial)  # type: ignore[misc]
        finally:
            self._honed_staging = None
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"  # type: ignore[attr-defined]
        final = os.path.join(root, name)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(os.path.join(root, ".staging", name), final)
        best = self._honed_best(root)
        _rotate(Path(root), args.save_total_limit, keep=best)

    def _honed_best(self, root: str) -> Path | None:
        """The best checkpoint (--keep-best) where it now lies: the stock trainer recorded
        it under the staging folder, so the state saved with the new checkpoint is fixed
        too, for a resumed run."""
        state = self.state  # type: ignore[attr-defined]
        if not state.best_global_step:
            return None
        best = Path(root) / f"{PREFIX_CHECKPOINT_DIR}-{state.best_global_step}"
        if best.is_dir():
            state.best_model_checkpoint = str(best)
            newest = Path(root) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            state.save_to_json(str(newest / STATE_FILE))
        return best


class SeededLengthGroupedSampler(torch.utils.data.Sampler):
    """Length-grouped batches drawn from a generator seeded by (seed, epoch).

    The stock sampler draws from the global RNG, which a resumed run restores to a later
    state, so the resumed data order differed from the uninterrupted run.
    """

    def __init__(self, inner: LengthGroupedSampler, seed: int) -> None:
        self.inner, self.seed, self.epoch = inner, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Any:
        self.inner.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(self.inner)


class HonedSFTTrainer(HonedTrainerMixin, SFTTrainer):
    """TRL's SFTTrainer with honed's guards."""


class HonedSeq2SeqTrainer(HonedTrainerMixin, Seq2SeqTrainer):
    """transformers' Seq2SeqTrainer with honed's guards."""


def _rotate(root: Path, limit: int | None, keep: Path | None = None) -> None:
    """Keep the newest `limit` complete checkpoints, and `keep` (the best) besides."""
    if not limit:
        return
    for old in complete_checkpoints(root)[:-limit]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


def complete_checkpoints(root: Path) -> list[Path]:
    """Checkpoints that finished writing (they hold trainer_state.json), oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name.rsplit("-", 1)[1]))


def latest_checkpoint(root: Path) -> str | None:
    """The newest complete checkpoint under root, if any."""
    complete = complete_checkpoints(root)
    if complete:
        return str(complete[-1])
    return get_last_checkpoint(str(root)) if root.is_dir() else None


def common_args(cfg: FinetuneConfig, out: Path, has_eval: bool, bf16: bool) -> dict[str, Any]:
    """TrainingArguments shared by both trainers, from the honed config."""
    check_keep_best(cfg, has_eval)
    lr = cfg.learning_rate or (2e-5 if cfg.method == "full" else 2e-4)
    reporters = [r.strip() for r in cfg.report_to.split(",") if r.strip() and r.strip() != "none"]
    return {
        "output_dir": str(out),
        "per_device_train_batch_size": cfg.batch_size,
        "per_device_eval_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "learning_rate": lr,
        "lr_scheduler_type": cfg.lr_scheduler,
        "warmup_steps": cfg.warmup_ratio,
        "weight_decay": cfg.weight_decay,
        "max_grad_norm": cfg.max_grad_norm,
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps,
        "logging_steps": cfg.logging_steps,
        "logging_nan_inf_filter": False,
        "eval_strategy": "steps" if has_eval else "no",
        "eval_steps": cfg.eval_steps,
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": None,  # honed rotates complete checkpoints itself
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "report_to": reporters or "none",
        "bf16": bf16,
        # bf16 autocast on a CPU (fast where it has AVX512-BF16/AMX) needs use_cpu said aloud
        "use_cpu": bf16 and not torch.cuda.is_available(),
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "include_num_input_tokens_seen": "non_padding",
        "train_sampling_strategy": "group_by_length" if cfg.batching == "grouped" else "random",
        "dataloader_num_workers": 0,
        "disable_tqdm": False,  # a progress bar even when library logging is quiet
        **(best_args(cfg) if cfg.keep_best else {}),
    }


def best_args(cfg: FinetuneConfig) -> dict[str, Any]:
    """--keep-best: a checkpoint at every evaluation (so the best step always has one; the
    stock trainer would otherwise name a best step it never saved), and the weights of the
    lowest validation loss loaded when training ends (never rotated away)."""
    return {"save_steps": cfg.eval_steps, "load_best_model_at_end": True,
            "metric_for_best_model": "eval_loss", "greater_is_better": False}  # fmt: skip


def check_keep_best(cfg: FinetuneConfig, has_eval: bool) -> None:
    """--keep-best needs validation rows to compare steps."""
    if not cfg.keep_best:
        return
    if has_eval is False:
        raise HonedError(
            "--keep-best needs validation rows to compare steps: pass --eval-data or a "
            "--val-fraction above 0"
        )


@dataclass
class TrainSetup:
    """What both trainer builders need: config, model, data, where to write, callbacks."""

    cfg: FinetuneConfig
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    train: list[Example]
    validation: list[Example]
    out: Path
    bf16: bool = False
    callbacks: list[Any] = field(default_factory=list)


def build_sft_trainer(
    setup: TrainSetup, peft_config: Any = None, trainer_cls: type = HonedSFTTrainer
) -> Trainer:
    """TRL SFTTrainer for a causal LM, with length grouping or BFD packing as configured."""
    use_compact_lm_head()
    cfg, train, validation = setup.cfg, setup.train, setup.validation
    args = common_args(cfg, setup.out, bool(validation), setup.bf16)
    packed = cfg.batching == "packed"
    sft = SFTConfig(
        **args,
        max_length=cfg.max_length,
        packing=packed,
        completion_only_loss=cfg.loss_on == "completion" and "prompt" in train[0],
        dataset_num_proc=None,
    )
    return trainer_cls(
        model=setup.model,
        args=sft,
        train_dataset=Dataset.from_list(train),
        eval_dataset=Dataset.from_list(validation) if validation else None,
        processing_class=setup.tokenizer,
        peft_config=peft_config,
        callbacks=setup.callbacks,
    )


def _seq2seq_dataset(
    examples: list[Example], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> Dataset:
    rows = []
    for ex in examples:
        enc = tokenizer(ex["prompt"], truncation=True, max_length=max_length)
        labels = tokenizer(text_target=answer_text(ex), truncation=True, max_length=max_length)
        rows.append({**enc, "labels": labels["input_ids"]})
    return Dataset.from_list(rows)


def build_seq2seq_trainer(setup: TrainSetup) -> Trainer:
    """Seq2SeqTrainer for encoder-decoder models (T5 / Flan-T5)."""
    cfg, tok = setup.cfg, setup.tokenizer
    args = common_args(cfg, setup.out, bool(setup.validation), setup.bf16)
    validation = _seq2seq_dataset(setup.validation, tok, cfg.max_length)
    return HonedSeq2SeqTrainer(
        model=setup.model,
        args=Seq2SeqTrainingArguments(**args),
        train_dataset=_seq2seq_dataset(setup.train, tok, cfg.max_length),
        eval_dataset=validation if setup.validation else None,
        data_collator=DataCollatorForSeq2Seq(tok, model=setup.model, label_pad_token_id=-100),
        processing_class=tok,
        callbacks=setup.callbacks,
    )
