"""Logits mode wiring: the KD trainer, its teacher and cache, and what goes in the manifest."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from honed.config import DistillConfig
from honed.data import PreparedData
from honed.distill.cache import TeacherCache
from honed.distill.kd import KDSettings, KDState, KDTrainer, LlamaCppTeacher, Teacher
from honed.errors import HonedError
from honed.train.finetune import StageHooks

log = logging.getLogger(__name__)


def logits_hooks(cfg: DistillConfig, record: dict[str, Any], cache_root: Path) -> StageHooks:
    """Hooks that turn the fine-tune stage into logit distillation."""
    from honed.distill.stage import data_hash, fingerprint

    teacher_sha = fingerprint(cfg.teacher)
    record["teacher"]["sha256"] = teacher_sha
    record["teacher"]["scored_by"] = scorer(cfg)
    # llama.cpp's logits differ from torch's on the same weights: a cache of their own
    cache_key = (
        teacher_sha if scorer(cfg) == "transformers" else sha256_text(teacher_sha, "llama.cpp")
    )
    settings = KDSettings(
        alpha=cfg.alpha,
        kind=cfg.kd_loss,
        temperature=cfg.temperature,
        beta=cfg.beta,
        top_k=cfg.top_k,
        on_policy=cfg.on_policy,
        on_policy_max_new_tokens=cfg.on_policy_max_new_tokens,
    )
    state = KDState(
        settings,
        TeacherCache(cache_root / cache_key[:16], cache_key, cfg.top_k),
        teacher_of(cfg),
        seed=cfg.seed,
    )

    def attach(trainer: Any) -> None:
        trainer.kd = state
        warm_cache(state, trainer, cfg.batch_size)

    def manifest(data: PreparedData) -> dict[str, Any]:
        loss = {
            "alpha": cfg.alpha,
            "kd": cfg.kd_loss,
            "temperature": cfg.temperature,
            "beta": cfg.beta,
            "top_k": cfg.top_k,
            "on_policy": cfg.on_policy,
        }
        return {
            "stage": "distill",
            "distill": {
                **record,
                "loss": loss,
                "cache": state.cache.stats(),
                "teacher_forward_passes": state.teacher.calls,
                "on_policy_batches": state.on_policy_batches,
                "data_sha256": data_hash(data),
            },
        }

    return StageHooks(trainer_cls=KDTrainer, on_trainer=attach, manifest=manifest)


def scorer(cfg: DistillConfig) -> str:
    """What computes the teacher's logits: llama.cpp when asked for (a GGUF teacher only),
    else transformers (under auto too: on a GPU torch is the fast one)."""
    return "llama.cpp" if cfg.teacher_backend == "llama.cpp" else "transformers"


def teacher_of(cfg: DistillConfig) -> Teacher | LlamaCppTeacher:
    """The teacher that scores the training sequences; a non-GGUF teacher for llama.cpp is a
    one-line error before anything runs."""
    if scorer(cfg) == "transformers":
        return Teacher(cfg.teacher, cfg.teacher_dtype, cfg.trust_remote_code)
    from honed.models.resolve import resolve

    if resolve(cfg.teacher).kind != "gguf":
        raise HonedError(
            f"--teacher-backend llama.cpp scores a GGUF teacher; '{cfg.teacher}' is not one: "
            "pass a .gguf file (honed quantize --method gguf-q8_0 makes one) or leave it out"
        )
    n_ctx = cfg.max_length + (cfg.on_policy_max_new_tokens if cfg.on_policy > 0 else 0)
    return LlamaCppTeacher(cfg.teacher, n_ctx=n_ctx, threads=cfg.threads)


def sha256_text(*parts: str) -> str:
    return hashlib.sha256(":".join(parts).encode()).hexdigest()


def warm_cache(state: KDState, trainer: Any, batch_size: int) -> None:
    """Run the teacher over the training and eval sequences before training, then free it
    (kept when on-policy batches need it). Each process of a distributed run takes its share.
    Fully on-policy training never reads the cache, so nothing is warmed for it."""
    if state.settings.on_policy >= 1.0:
        return
    rows: list[list[int]] = []
    for dataset in (trainer.train_dataset, trainer.eval_dataset):
        if dataset is not None:
            rows.extend(list(ids) for ids in dataset["input_ids"])
    args = trainer.args
    mine = rows[args.process_index :: args.world_size]
    vocab = trainer.model.get_output_embeddings().weight.shape[0]
    done = state.warm(mine, vocab, batch_size, release=not state.settings.on_policy)
    trainer.accelerator.wait_for_everyone()
    if done:
        log.info("teacher top-%d cached for %d sequences", state.settings.top_k, done)
