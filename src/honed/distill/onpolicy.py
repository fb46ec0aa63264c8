"""On-policy distillation (GKD, Agarwal et al. 2024) inside the logits-mode trainer.

With probability `on_policy` (GKD's lambda) a training batch's answers are replaced by the
student's own samples: the prompt of each row is kept, the student continues it (sampled,
TRL's GKD generation step), and the teacher scores every position of the sample. The loss on
such a batch is the KD term alone (cross-entropy on the student's own tokens teaches
nothing), and the teacher's targets skip the cache: samples are never seen twice.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import warnings
from typing import Any

import torch
from transformers import GenerationConfig


def left_padded_prompts(
    input_ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's prompt (the real tokens before its first labelled one), left-padded."""
    prompts = []
    for ids, m, lab in zip(input_ids, mask, labels, strict=True):
        real = int(m.sum())
        labelled = (lab[:real] != -100).nonzero()
        cut = int(labelled[0]) if len(labelled) else real
        prompts.append(ids[: max(cut, 1)])
    width = max(len(p) for p in prompts)
    out = torch.full((len(prompts), width), pad_id, dtype=input_ids.dtype)
    out_mask = torch.zeros((len(prompts), width), dtype=mask.dtype)
    for n, p in enumerate(prompts):
        out[n, width - len(p) :], out_mask[n, width - len(p) :] = p, 1
    return out.to(input_ids.device), out_mask.to(input_ids.device)


def right_padded(
    ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, pad_id: int
) -> dict[str, torch.Tensor]:
    """TRL's (left-padded prompt + masked completion) batch as honed's right-padded one."""
    rows = [(i[m.bool()], lab[m.bool()]) for i, m, lab in zip(ids, mask, labels, strict=True)]
    width = max(len(r) for r, _ in rows)
    out = {
        "input_ids": torch.full((len(rows), width), pad_id, dtype=ids.dtype),
        "attention_mask": torch.zeros((len(rows), width), dtype=torch.long),
        "labels": torch.full((len(rows), width), -100, dtype=labels.dtype),
    }
    for n, (row, lab) in enumerate(rows):
        out["input_ids"][n, : len(row)] = row
        out["attention_mask"][n, : len(row)] = 1
        out["labels"][n, : len(row)] = lab
    return {k: v.to(ids.device) for k, v in out.items()}


def generation_config(tokenizer: Any, model: Any, max_new_tokens: int, temperature: float) -> Any:
    """GKD's sampling settings: plain sampling at the given temperature, the model's stops."""
    eos = getattr(model.generation_config, "eos_token_id", None) or tokenizer.eos_token_id
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=True,
        temperature=temperature,
        top_k=0,
        top_p=1.0,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=eos,
    )


def student_samples(trainer: Any, model: Any, inputs: dict[str, Any], gen: Any) -> dict:
    """The batch with each answer replaced by the student's sample (labels on the sample)."""
    from trl.models.utils import unwrap_model_for_generation

    with warnings.catch_warnings():  # "trl.experimental is unstable": pinned, and tested here
        warnings.simplefilter("ignore")
        from trl.experimental.gkd import GKDTrainer

    pad = trainer.processing_class.pad_token_id
    mask = inputs.get("attention_mask")
    if mask is None:
        mask = torch.ones_like(inputs["input_ids"])
    prompts, prompt_mask = left_padded_prompts(inputs["input_ids"], mask, inputs["labels"], pad)
    batch = {"prompts": prompts, "prompt_attention_mask": prompt_mask}
    with unwrap_model_for_generation(model, trainer.accelerator) as unwrapped:
        was_training = unwrapped.training
        unwrapped.eval()
        try:
            ids, new_mask, labels = GKDTrainer.generate_on_policy_outputs(unwrapped, batch, gen)
        finally:
            unwrapped.train(was_training)
    return right_padded(ids, new_mask, labels, pad)


def return_freed_memory() -> None:
    """Hand the memory an on-policy step freed back to the system (glibc's malloc_trim).

    Every on-policy batch has its own length, so the teacher's and the student's large logits
    tensors come in ever other sizes, which glibc's heaps keep once freed. On a 24 GB CPU
    machine two on-policy runs of 64 steps of 8 were killed out of memory near step 58 (24 GB
    resident) where a run resumed at step 50 peaked at 17.8 GB: memory climbed over the
    steps. That freed-but-kept blocks made the climb is a guess this trim acts on;
    metrics.jsonl's rss_gb shows the climb, step by step. A no-op off glibc."""
    gc.collect()
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
