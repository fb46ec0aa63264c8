"""`honed finetune`: full, LoRA or QLoRA fine-tuning of a causal or text-to-text model.

The run is built in OUTPUT.tmp/ (checkpoints, metrics, logs) and renamed to OUTPUT/ when it
succeeds. Interrupted runs keep their work dir for `--resume`; a run whose loss stops being
finite keeps its last good checkpoint.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_kbit_training
from transformers import Trainer, set_seed
from transformers.trainer_callback import ProgressCallback

from honed import artifacts
from honed.bench import machine
from honed.config import FinetuneConfig
from honed.data import PreparedData, prepare_data
from honed.errors import HonedError, NonFiniteLossError
from honed.models.load import LoadedModel, check_bf16_speed, load_model, pick_dtype
from honed.models.merge import merge_adapter
from honed.models.resolve import BUILTINS, resolve
from honed.progress import status
from honed.train.callbacks import (
    GuardCallback,
    InterruptHandler,
    MetricsLogger,
    QuietProgress,
    RunFlags,
)
from honed.train.plots import plot_loss
from honed.train.samples import generate_texts, sample_prompts, write_samples
from honed.train.trainer import (
    HonedSFTTrainer,
    TrainSetup,
    build_seq2seq_trainer,
    build_sft_trainer,
    latest_checkpoint,
)

log = logging.getLogger("honed")


class Interrupted(Exception):
    """The user pressed Ctrl-C; a checkpoint was saved. The CLI exits with 130."""


@dataclass
class StageHooks:
    """How another stage (distill) reuses this one: its trainer class, and what it adds."""

    trainer_cls: type | None = None  # replaces HonedSFTTrainer for causal models
    on_trainer: Callable[[Trainer], None] | None = None  # called once the trainer is built
    manifest: Callable[[PreparedData], dict[str, Any]] | None = None  # merged into the manifest
    callbacks: list[Any] = field(default_factory=list)


@dataclass
class RunResult:
    """What a finished run produced."""

    output: Path
    manifest: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)


def default_output(cfg: FinetuneConfig) -> Path:
    """runs/<model>-<data>-<method>, with path-unfriendly characters replaced."""

    def slug(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(text.rstrip("/")).name).strip("-") or "x"

    return Path("runs") / f"{slug(cfg.model)}-{slug(cfg.data)}-{cfg.method}"


def check_lora_targets(model: torch.nn.Module, targets: str) -> str | list[str]:
    """`all-linear` or the list of names, each of which must match some module."""
    if targets == "all-linear":
        return targets
    names = [t.strip() for t in targets.split(",") if t.strip()]
    leaves = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in names if t not in leaves]
    if missing:
        linear = sorted(
            {
                n.rsplit(".", 1)[-1]
                for n, m in model.named_modules()
                if isinstance(m, torch.nn.Linear)
            }
        )
        raise HonedError(
            f"LoRA target {', '.join(missing)} matches no module: choose from {', '.join(linear)} "
            "or use all-linear"
        )
    return names


def lora_config(cfg: FinetuneConfig, loaded: LoadedModel) -> LoraConfig:
    """The PEFT LoRA config for this run."""
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=check_lora_targets(loaded.model, cfg.lora_targets),
        task_type=TaskType.SEQ_2_SEQ_LM if loaded.is_seq2seq else TaskType.CAUSAL_LM,
    )


def weights_dtype(cfg: FinetuneConfig) -> str:
    """The dtype the model is loaded in. A full fine-tune in bf16 or fp16 keeps float32 master
    weights and computes in bf16 through autocast: AdamW's steps (about the learning rate per
    weight) fall below half a bf16 step for most weights and would be rounded away. The
    output is saved in the dtype asked for. LoRA's frozen base stays in that dtype (PEFT
    keeps the adapters in float32)."""
    if cfg.method == "full" and pick_dtype(cfg.dtype) != torch.float32:
        return "float32"
    return cfg.dtype


def _load(cfg: FinetuneConfig) -> LoadedModel:
    source = resolve(cfg.model)
    if cfg.method == "qlora" and source.kind == "adapter":
        raise HonedError("QLoRA needs float base weights: pass the adapter's OUTPUT/merged instead")
    with status(f"loading {cfg.model} ({source.kind})"):
        return load_model(
            source,
            dtype=weights_dtype(cfg),
            load_in_4bit=cfg.method == "qlora",
            trust_remote_code=cfg.trust_remote_code,
        )


def _build_trainer(
    cfg: FinetuneConfig,
    loaded: LoadedModel,
    data: PreparedData,
    work: Path,
    flags: RunFlags,
    hooks: StageHooks,
) -> Trainer:
    dtype = pick_dtype(cfg.dtype)
    check_bf16_speed(dtype)  # a full fine-tune loads float32 and autocasts to bf16
    bf16 = dtype == torch.bfloat16
    peft = lora_config(cfg, loaded) if cfg.method != "full" else None
    callbacks = [MetricsLogger(work / "metrics.jsonl"), GuardCallback(flags)]
    validation = data.validation[: cfg.max_eval_samples]
    model = loaded.model
    if loaded.is_seq2seq and peft is not None:
        if cfg.method == "qlora":
            model = prepare_model_for_kbit_training(model, cfg.gradient_checkpointing)
        model = get_peft_model(model, peft)
    setup = TrainSetup(
        cfg, model, loaded.tokenizer, data.train, validation, work / "checkpoints", bf16, callbacks
    )
    if loaded.is_seq2seq:
        trainer = build_seq2seq_trainer(setup)
    else:
        trainer = build_sft_trainer(setup, peft, hooks.trainer_cls or HonedSFTTrainer)
    if trainer.train_dataset is not None and len(trainer.train_dataset) == 0:
        raise HonedError(
            f"no training example is left after tokenizing (each needs an answer within "
            f"max_length {cfg.max_length} tokens): raise --max-length or check the data"
        )
    trainer.honed_flags = flags  # type: ignore[attr-defined]
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(QuietProgress())
    return trainer


def _samples(
    cfg: FinetuneConfig, loaded: LoadedModel, data: PreparedData, model: torch.nn.Module
) -> tuple[list[str], list[str]]:
    prompts = sample_prompts(data.validation or data.train, loaded.tokenizer, cfg.samples)
    if not prompts:
        return [], []
    with status(f"generating {len(prompts)} samples"):
        texts = generate_texts(
            model, loaded.tokenizer, prompts, cfg.sample_max_new_tokens, loaded.is_seq2seq
        )
    return prompts, texts


def _before(cfg: FinetuneConfig, loaded: LoadedModel, data: PreparedData, work: Path) -> None:
    """Generate 'before' samples once per run (kept across --resume)."""
    path = work / "samples_before.json"
    if cfg.samples and not path.exists():
        prompts, texts = _samples(cfg, loaded, data, loaded.model)
        path.write_text(json.dumps({"prompts": prompts, "texts": texts}))


def _train(cfg: FinetuneConfig, trainer: Trainer, work: Path, flags: RunFlags) -> dict[str, Any]:
    resume_from = latest_checkpoint(work / "checkpoints") if cfg.resume else None
    if cfg.resume and resume_from is None:
        log.warning("no complete checkpoint in %s: starting from step 0", work / "checkpoints")
    metrics: dict[str, Any] = {}
    if trainer.eval_dataset is not None and resume_from is None:
        metrics["eval_loss_before"] = trainer.evaluate()["eval_loss"]
    ticks = machine.cpu_ticks()
    with InterruptHandler(flags):
        result = trainer.train(resume_from_checkpoint=resume_from)
    if trainer.args.load_best_model_at_end:
        metrics["best_step"] = trainer.state.best_global_step
    metrics.update(
        steps=trainer.state.global_step,
        train_loss=result.training_loss,
        train_runtime_s=round(result.metrics.get("train_runtime", 0.0), 2),
        **machine.taken_since(ticks, "training", "its runtime and tokens/s read slow"),
    )
    return metrics


def _stop_if_failed(flags: RunFlags, work: Path) -> None:
    last = latest_checkpoint(work / "checkpoints")
    where = last or "none (no checkpoint was written before the failure)"
    if flags.stopped_nonfinite:
        raise NonFiniteLossError(
            f"loss was not finite for {flags.patience} consecutive steps (from step "
            f"{flags.first_bad_step}); stopped; last good checkpoint: {where}. Lower the learning "
            "rate and pass --resume, or check the data"
        )
    if flags.interrupted:
        raise Interrupted(f"checkpoint saved: {where}; continue with the same command and --resume")


def _save_outputs(
    cfg: FinetuneConfig, trainer: Trainer, loaded: LoadedModel, data: PreparedData, work: Path
) -> None:
    if cfg.method == "full":
        trainer.model.to(pick_dtype(cfg.dtype))  # float32 master weights: saved as asked
    trainer.save_model(str(work))
    (work / "training_args.bin").unlink(missing_ok=True)  # a pickle; the manifest has the config
    loaded.tokenizer.save_pretrained(str(work))
    if cfg.samples:
        before = json.loads((work / "samples_before.json").read_text())
        _, after = _samples(cfg, loaded, data, trainer.model)
        examples = data.validation or data.train
        write_samples(work / "samples.md", examples, before["prompts"], before["texts"], after)
    plot_loss(work / "metrics.jsonl", work / "loss.png", f"{cfg.model} · {cfg.method}")


def _manifest(
    cfg: FinetuneConfig, loaded: LoadedModel, data: PreparedData, metrics: dict[str, Any]
) -> dict[str, Any]:
    source = loaded.source
    base_ref = cfg.model if source.kind == "hub" or cfg.model in BUILTINS else source.path
    is_adapter = cfg.method != "full"
    trainable = sum(p.numel() for p in loaded.model.parameters() if p.requires_grad)
    return {
        "kind": "adapter" if is_adapter else "model",
        "format": "peft-adapter" if is_adapter else "hf-safetensors",
        "stage": "finetune",
        "task": "seq2seq" if loaded.is_seq2seq else "causal",
        "parent": {
            "ref": cfg.model,
            "path": source.path if source.kind != "hub" else None,
            "source": source.describe(),
        },
        "base_model": {"ref": base_ref},
        "config": cfg.model_dump(mode="json"),
        "seed": cfg.seed,
        "data": {
            "spec": cfg.data,
            "format": data.fmt.kind,
            "train_rows": len(data.train),
            "validation_rows": len(data.validation),
            "skipped_rows": data.skipped,
        },
        "parameters": {"trainable": trainable},
        "metrics": metrics,
    }


def _write_merged(cfg: FinetuneConfig, loaded: LoadedModel, work: Path, final: Path) -> None:
    merged = merge_adapter(
        loaded.source,
        str(work),
        qlora=cfg.method == "qlora",
        trust_remote_code=cfg.trust_remote_code,
    )
    target = work / "merged"
    merged.save_pretrained(target)
    loaded.tokenizer.save_pretrained(target)
    artifacts.write_manifest(
        target,
        {
            "kind": "model",
            "format": "hf-safetensors",
            "stage": "merge",
            "task": "seq2seq" if loaded.is_seq2seq else "causal",
            "parent": {"ref": str(final), "path": str(final.resolve())},
            "config": {"method": cfg.method, "qlora_dequantized_base": cfg.method == "qlora"},
            "seed": cfg.seed,
        },
    )


REPORTERS = ("tensorboard", "wandb", "none")


def setup_loggers(report_to: str, work: Path, run_name: str) -> None:
    """Point TensorBoard and W&B (offline works too) at the work dir; check they exist."""
    names = [r.strip() for r in report_to.split(",") if r.strip()]
    unknown = [n for n in names if n not in REPORTERS]
    if unknown:
        raise HonedError(
            f"unknown --report-to {', '.join(unknown)}: use tensorboard, wandb or none"
        )
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(work / "tensorboard")
    if "wandb" in names:
        if importlib.util.find_spec("wandb") is None:
            raise HonedError("--report-to wandb needs wandb: pip install 'honed[wandb]'")
        os.environ["WANDB_DIR"] = str(work)
        os.environ.setdefault("WANDB_PROJECT", "honed")
        os.environ.setdefault("WANDB_NAME", run_name)


def _prepare(cfg: FinetuneConfig, work: Path, final: Path) -> tuple[LoadedModel, PreparedData]:
    set_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    setup_loggers(cfg.report_to, work, final.name)
    loaded = _load(cfg)
    data = prepare_data(
        cfg.data,
        loaded.tokenizer,
        is_seq2seq=loaded.is_seq2seq,
        template=cfg.template,
        system_prompt=cfg.system_prompt,
        prompt_field=cfg.prompt_field,
        completion_field=cfg.completion_field,
        eval_data=cfg.eval_data,
        val_fraction=cfg.val_fraction,
        max_samples=cfg.max_samples,
        skip_bad_rows=cfg.skip_bad_rows,
        seed=cfg.seed,
    )
    if data.skipped:
        log.warning("skipped %d malformed rows (first: %s)", data.skipped, data.first_skipped)
    return loaded, data


def _run(cfg: FinetuneConfig, work: Path, final: Path, hooks: StageHooks) -> RunResult | None:
    state = PartialState()
    loaded, data = _prepare(cfg, work, final)
    if state.is_main_process:
        _before(cfg, loaded, data, work)
    flags = RunFlags(patience=cfg.nan_patience)
    trainer = _build_trainer(cfg, loaded, data, work, flags, hooks)
    for cb in hooks.callbacks:
        trainer.add_callback(cb)
    if hooks.on_trainer is not None:
        hooks.on_trainer(trainer)
    metrics = _train(cfg, trainer, work, flags)
    _stop_if_failed(flags, work)
    if trainer.eval_dataset is not None:
        metrics["eval_loss_after"] = final_eval_loss(trainer)
    if not state.is_main_process:
        return None
    loaded.model = trainer.model
    _save_outputs(cfg, trainer, loaded, data, work)
    if cfg.merge and cfg.method != "full":
        _write_merged(cfg, loaded, work, final)
    if not cfg.keep_checkpoints:
        shutil.rmtree(work / "checkpoints", ignore_errors=True)
    manifest = _manifest(cfg, loaded, data, metrics)
    if hooks.manifest is not None:
        manifest.update(hooks.manifest(data))
    manifest = artifacts.write_manifest(work, manifest)
    artifacts.publish(work, final)
    return RunResult(final, manifest, metrics)


def finetune(
    cfg: FinetuneConfig,
    extra_callbacks: list[Any] | None = None,
    hooks: StageHooks | None = None,
) -> RunResult | None:
    """Run the fine-tune stage; returns the result on the main process, None on others.

    A fresh run that fails before its first checkpoint removes its work dir, so fixing a typo
    and running again needs no --overwrite; anything with a checkpoint is kept for --resume.
    """
    final = (cfg.output or default_output(cfg)).resolve()
    state = PartialState()
    with state.main_process_first():
        if state.is_main_process:
            artifacts.prepare_output(final, overwrite=cfg.overwrite, resume=cfg.resume)
    work = artifacts.tmp_dir_for(final)
    try:
        hooks = hooks or StageHooks()
        hooks.callbacks = [*hooks.callbacks, *(extra_callbacks or [])]
        return _run(cfg, work, final, hooks)
    except BaseException:
        if (
            state.is_main_process
            and not cfg.resume
            and latest_checkpoint(work / "checkpoints") is None
        ):
            shutil.rmtree(work, ignore_errors=True)
        raise


def final_eval_loss(trainer: Any) -> float:
    """The validation loss of the weights kept: the best step's with --keep-best, else the
    last step's, the one already logged at that step when the eval schedule ended there
    (same on every rank), else a fresh evaluation."""
    if trainer.args.load_best_model_at_end and trainer.state.best_metric is not None:
        return float(trainer.state.best_metric)
    step = trainer.state.global_step
    for entry in reversed(trainer.state.log_history):
        if entry.get("step") == step and "eval_loss" in entry:
            return float(entry["eval_loss"])
    return float(trainer.evaluate()["eval_loss"])
