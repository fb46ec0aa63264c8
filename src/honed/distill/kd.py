"""Logit distillation inside the fine-tune stage's trainer.

KDTrainer replaces the stage's loss with alpha * KD + (1 - alpha) * CE (losses.py). The
teacher's top-k for each sequence comes from the on-disk cache. Before training, `warm`
runs the teacher once over every training and eval sequence the cache lacks and then frees
it, so the student trains without the teacher in memory; a rerun on cached data never loads
it. kd and ce are logged next to the loss. With `on_policy` > 0, that share of batches is the
student's own samples (onpolicy.py, GKD), scored by the teacher as they come.
"""

from __future__ import annotations

import gc
import logging
import random
from dataclasses import dataclass, field
from typing import Any

import torch

from honed.distill.cache import TeacherCache
from honed.distill.losses import distill_loss
from honed.errors import HonedError
from honed.models.load import load_model
from honed.models.resolve import resolve
from honed.progress import track
from honed.train.trainer import HonedSFTTrainer

log = logging.getLogger(__name__)


@dataclass
class KDSettings:
    """The loss and its knobs."""

    alpha: float
    kind: str
    temperature: float
    beta: float
    top_k: int
    on_policy: float = 0.0
    on_policy_max_new_tokens: int = 128


class Teacher:
    """The teacher model, loaded on first use; counts its forward passes."""

    def __init__(self, ref: str, dtype: str, trust_remote_code: bool) -> None:
        self.ref = ref
        self.dtype = dtype
        self.trust_remote_code = trust_remote_code
        self.calls = 0
        self._model: Any = None

    def model(self) -> Any:
        if self._model is None:
            log.info("loading teacher %s", self.ref)
            loaded = load_model(
                resolve(self.ref), dtype=self.dtype, trust_remote_code=self.trust_remote_code
            )
            self._model = loaded.model.eval().requires_grad_(False)
        return self._model

    def release(self) -> None:
        """Free the teacher's weights (it is loaded again if it is needed again)."""
        if self._model is None:
            return
        self._model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    @torch.inference_mode()
    def top_k(self, rows: list[list[int]], k: int, vocab: int) -> list[tuple[torch.Tensor, ...]]:
        """(ids, logits) [len, k] of the teacher's best k tokens at each position of each row.
        Rows run in groups of at most TEACHER_TOKENS padded positions, so the teacher's
        activations and its [positions, vocab] logits stay bounded whatever the batch size."""
        self.calls += 1
        out: list[tuple[torch.Tensor, ...]] = []
        for start, end in token_groups([len(r) for r in rows], TEACHER_TOKENS):
            out.extend(self._top_k(rows[start:end], k, vocab))
        return out

    def _top_k(self, rows: list[list[int]], k: int, vocab: int) -> list[tuple[torch.Tensor, ...]]:
        model = self.model()
        device = next(model.parameters()).device
        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.bool)
        for n, row in enumerate(rows):
            ids[n, : len(row)] = torch.tensor(row)
            mask[n, : len(row)] = True
        inputs = {"input_ids": ids.to(device), "attention_mask": mask.long().to(device)}
        if takes_logits_to_keep(model):  # the LM head on the rows' own positions, not padding
            logits = model(**inputs, logits_to_keep=mask.to(device)).logits
        else:
            logits = model(**inputs).logits[mask.to(device)]
        # top-k in the model's dtype: a float32 copy of every position's logits is GBs
        values, index = logits[..., :vocab].topk(k, dim=-1)
        del logits
        lengths = [len(r) for r in rows]
        return list(
            zip(index.cpu().split(lengths), values.float().cpu().split(lengths), strict=True)
        )


# padded positions per teacher forward pass (see Teacher.top_k): their float32 logits over
# Qwen's 152k tokens are 0.6 GB (benchmarks/teacher_topk_memory.py)
TEACHER_TOKENS = 1024


def token_groups(lengths: list[int], budget: int) -> list[tuple[int, int]]:
    """Consecutive [start, end) groups of rows whose padded size (rows x longest) stays
    within budget; a row longer than the budget is a group of its own."""
    groups: list[tuple[int, int]] = []
    start, longest = 0, 0
    for n, length in enumerate(lengths):
        longest = max(longest, length)
        if n > start and (n - start + 1) * longest > budget:
            groups.append((start, n))
            start, longest = n, length
    if lengths:
        groups.append((start, len(lengths)))
    return groups


def takes_logits_to_keep(model: Any) -> bool:
    """Whether a model's forward takes transformers' `logits_to_keep` (a PEFT wrapper's base
    model is asked)."""
    from honed.runtime.row_decode import accepts

    return accepts(model.get_base_model() if hasattr(model, "get_base_model") else model,
                   "logits_to_keep")  # fmt: skip


class LlamaCppTeacher:
    """A GGUF teacher scored by llama.cpp (`--teacher-backend llama.cpp`): each row's logits
    at every position, one row at a time, on the file's own quantized weights. On a CPU this
    is much lighter than the teacher dequantized into torch float32 (size and speed:
    `benchmarks/teacher_scoring.py`); the logits are those of the file honed eval scores."""

    def __init__(self, ref: str, n_ctx: int, threads: int | None) -> None:
        self.ref = ref
        self.n_ctx = n_ctx
        self.threads = threads
        self.calls = 0
        self._backend: Any = None

    def backend(self) -> Any:
        if self._backend is None:
            from honed.runtime.base import load_backend

            log.info("loading teacher %s with llama.cpp", self.ref)
            self._backend = load_backend(
                self.ref, "llama.cpp", n_ctx=self.n_ctx, n_threads=self.threads, logits_all=True
            )
        return self._backend

    def release(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def top_k(self, rows: list[list[int]], k: int, vocab: int) -> list[tuple[torch.Tensor, ...]]:
        """(ids, logits) [len, k] of the teacher's best k tokens at each position of each row."""
        self.calls += 1
        backend, out = self.backend(), []
        for row in rows:
            logits = torch.from_numpy(backend.token_logits(row))[:, :vocab]
            values, index = logits.topk(k, dim=-1)
            out.append((index, values))
        return out


@dataclass
class KDState:
    """What the trainer needs: settings, cache, teacher, and running loss parts for logging."""

    settings: KDSettings
    cache: TeacherCache
    teacher: Teacher | LlamaCppTeacher
    parts: dict[str, list[float]] = field(default_factory=lambda: {"kd": [], "ce": []})
    on_policy_batches: int = 0
    seed: int = 0

    def on_policy_at(self, step: int, micro: int) -> bool:
        """Whether micro-batch `micro` of optimizer step `step` is the student's own samples:
        a draw seeded by its position, so a resumed run draws as the uninterrupted one."""
        share = self.settings.on_policy
        return share > 0 and random.Random(f"{self.seed}:{step}:{micro}").random() < share

    def warm(
        self, sequences: list[list[int]], vocab: int, batch_size: int, release: bool = True
    ) -> int:
        """Fill the cache for every sequence it lacks, in batches of similar length, then free
        the teacher (unless told not to); returns how many sequences the teacher ran on."""
        todo = sorted({tuple(s) for s in sequences if s and not self.cache.has(s)}, key=len)
        what = f"teacher top-{self.settings.top_k}, batches of {batch_size} sequences"
        for start in track(range(0, len(todo), batch_size), what):
            rows = [list(r) for r in todo[start : start + batch_size]]
            for row, (top_ids, top_logits) in zip(
                rows, self.teacher.top_k(rows, self.settings.top_k, vocab), strict=True
            ):
                self.cache.put(row, top_ids, top_logits)
        self.cache.filled += len(todo)
        if release:
            self.teacher.release()
        return len(todo)

    def targets(
        self, input_ids: torch.Tensor, mask: torch.Tensor, vocab: int, cached: bool = True
    ) -> tuple:
        """Teacher top-k ids and logits [batch, len, k] for a right-padded batch."""
        rows = [ids[m.bool()].tolist() for ids, m in zip(input_ids, mask, strict=True)]
        for m, row in zip(mask, rows, strict=True):
            if not bool(m[: len(row)].all()):
                raise HonedError("internal: distillation expects right-padded batches")
        found = [self.cache.get(r) if cached else None for r in rows]
        missing = [n for n, f in enumerate(found) if f is None]
        if missing:
            computed = self.teacher.top_k([rows[n] for n in missing], self.settings.top_k, vocab)
            for n, (top_ids, top_logits) in zip(missing, computed, strict=True):
                if cached:
                    self.cache.put(rows[n], top_ids, top_logits)
                found[n] = (top_ids.long(), top_logits.half().float())  # as stored
        k = self.settings.top_k
        ids = torch.zeros(*input_ids.shape, k, dtype=torch.long)
        logits = torch.zeros(*input_ids.shape, k)
        for n, (top_ids, top_logits) in enumerate(found):
            ids[n, : len(top_ids)], logits[n, : len(top_logits)] = top_ids, top_logits
        return ids.to(input_ids.device), logits.to(input_ids.device)


def next_tokens(labels: torch.Tensor) -> torch.Tensor:
    """The label each position predicts (the next one; -100 after the last)."""
    shifted = torch.full_like(labels, -100)
    shifted[:, :-1] = labels[:, 1:]
    return shifted


def scored_forward(
    model: Any, input_ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, trim: bool
) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """The student's output, its logits at the positions whose next token is scored
    ([n, vocab]), and those positions ([batch, len] bool). With trim, the LM head runs only
    there (transformers' `logits_to_keep` mask): prompts and padding are not scored, and Qwen's
    152k-token head is about a quarter of a 0.5B model's forward pass."""
    keep = next_tokens(labels) != -100
    trimmed = trim and bool(keep.any())
    extra = {"logits_to_keep": keep} if trimmed else {}
    out = model(input_ids=input_ids, attention_mask=mask, use_cache=False, **extra)
    return out, out.logits if trimmed else out.logits[keep], keep


class KDTrainer(HonedSFTTrainer):
    """The SFT trainer with the distillation loss; `kd` is attached after construction."""

    kd: KDState
    _sampled = False  # the batch in compute_loss is the student's own samples
    _logits_to_keep: bool | None = None
    _micro = (-1, 0)  # (optimizer step, micro-batch within it) of the last training step

    def training_step(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        """With probability on_policy, train on the student's samples of this batch's prompts."""
        s = self.kd.settings
        step = self.state.global_step
        if self._micro[0] < 0 < step:  # resumed: count the draws of the steps already trained
            accum = self.args.gradient_accumulation_steps
            done = [self.kd.on_policy_at(k, m) for k in range(step) for m in range(accum)]
            self.kd.on_policy_batches += sum(done)
        micro = self._micro[1] + 1 if self._micro[0] == step else 0
        self._micro = (step, micro)
        self._sampled = self.kd.on_policy_at(step, micro)
        if self._sampled:
            from honed.distill.onpolicy import generation_config, student_samples

            gen = generation_config(
                self.processing_class,
                self.accelerator.unwrap_model(model),
                s.on_policy_max_new_tokens,
                temperature=1.0,
            )
            inputs = {**inputs, **student_samples(self, model, inputs, gen)}
            self.kd.on_policy_batches += 1
        try:
            return super().training_step(model, inputs, *args, **kwargs)
        finally:
            if self._sampled:
                from honed.distill.onpolicy import return_freed_memory

                return_freed_memory()
            self._sampled = False

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(inputs["input_ids"])
        labels = inputs["labels"]
        out, logits, keep = scored_forward(
            model, inputs["input_ids"], mask, labels, self._trims(model)
        )
        vocab = logits.shape[-1]
        cached = not self._sampled
        teacher_ids, teacher_logits = self.kd.targets(inputs["input_ids"], mask, vocab, cached)
        s = self.kd.settings
        loss, parts = distill_loss(
            logits,
            next_tokens(labels)[keep],
            teacher_ids[keep],
            teacher_logits[keep],
            alpha=s.alpha if cached else 1.0,
            kind=s.kind,
            temperature=s.temperature,
            beta=s.beta,
        )
        if model.training:
            for key, value in parts.items():
                self.kd.parts[key].append(value)
        return (loss, out) if return_outputs else loss

    def _trims(self, model: Any) -> bool:
        """Whether the student's forward takes transformers' `logits_to_keep`."""
        if self._logits_to_keep is None:
            self._logits_to_keep = takes_logits_to_keep(self.accelerator.unwrap_model(model))
        return self._logits_to_keep

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Add the mean KD and CE since the last log to the training logs."""
        if "loss" in logs:
            for key, values in self.kd.parts.items():
                if values:
                    logs[key] = round(sum(values) / len(values), 6)
                    values.clear()
        super().log(logs, *args, **kwargs)
