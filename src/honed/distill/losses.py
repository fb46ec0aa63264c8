"""Knowledge-distillation losses on a teacher's cached top-k next-token distribution.

The teacher is stored as its k most likely tokens per position (ids and logits); on that
support both distributions are renormalised at temperature T: p (teacher) and q (student).
- forward KL(p || q): the student covers what the teacher considers likely (mean-seeking);
- reverse KL(q || p): the student commits to the teacher's modes (mode-seeking);
- generalized JSD with beta, as TRL's GKD defines it: m = beta p + (1 - beta) q,
  JSD = beta KL(p || m) + (1 - beta) KL(q || m); beta 0 is forward KL, beta 1 reverse KL.
Each is multiplied by T^2 (Hinton et al.) so gradients keep their scale as T changes, and
averaged over the positions the mask keeps. The training loss mixes it with cross-entropy:
alpha * KD + (1 - alpha) * CE.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

Kind = Literal["forward_kl", "reverse_kl", "jsd"]


def topk_log_probs(
    student_logits: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log p and log q on the teacher's top-k support, each renormalised, at temperature T.

    student_logits [..., vocab]; teacher_ids and teacher_logits [..., k].
    """
    picked = torch.gather(student_logits, -1, teacher_ids.long())
    log_q = F.log_softmax(picked.float() / temperature, dim=-1)
    log_p = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return log_p, log_q


def divergence(log_p: torch.Tensor, log_q: torch.Tensor, kind: Kind, beta: float) -> torch.Tensor:
    """Per-position divergence between teacher (log_p) and student (log_q), summed over k."""
    if kind == "forward_kl" or (kind == "jsd" and beta == 0):
        return _kl(log_p, log_q)
    if kind == "reverse_kl" or (kind == "jsd" and beta == 1):
        return _kl(log_q, log_p)
    if kind != "jsd":
        raise ValueError(f"unknown KD loss '{kind}': use forward_kl, reverse_kl or jsd")
    if not 0 < beta < 1:
        raise ValueError(f"jsd beta must be in [0, 1], got {beta}")
    log_m = torch.logsumexp(
        torch.stack([log_p + math.log(beta), log_q + math.log(1 - beta)]), dim=0
    )
    return beta * _kl(log_p, log_m) + (1 - beta) * _kl(log_q, log_m)


def _kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """KL(a || b) over the last dimension, from log-probabilities."""
    return (log_a.exp() * (log_a - log_b)).sum(-1)


def kd_loss(
    student_logits: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    kind: Kind = "forward_kl",
    temperature: float = 1.0,
    beta: float = 0.5,
) -> torch.Tensor:
    """Mean KD divergence over the masked positions (all of them without a mask), times T^2."""
    if temperature <= 0:
        raise ValueError(f"temperature must be above 0, got {temperature}")
    log_p, log_q = topk_log_probs(student_logits, teacher_ids, teacher_logits, temperature)
    per_position = divergence(log_p, log_q, kind, beta)
    keep = mask.float() if mask is not None else torch.ones_like(per_position)
    return (per_position * keep).sum() / keep.sum().clamp(min=1) * temperature**2


def distill_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    alpha: float = 0.5,
    kind: Kind = "forward_kl",
    temperature: float = 1.0,
    beta: float = 0.5,
) -> tuple[torch.Tensor, dict[str, float]]:
    """alpha * KD + (1 - alpha) * CE on next-token targets; labels -100 are not scored.

    All tensors are aligned on positions already: student_logits[..., t, :] predicts
    labels[..., t], and teacher_ids / teacher_logits hold the teacher's top-k there.
    """
    mask = labels != -100
    # only the scored positions: an fp32 copy of every position's logits (prompt and padding
    # too) costs batch x length x vocab x 4 bytes, 2.5 GB for 8 x 512 of Qwen's 151,936 tokens
    scored = student_logits[mask]
    ce = F.cross_entropy(scored.float(), labels[mask])
    kd = kd_loss(
        scored,
        teacher_ids[mask],
        teacher_logits[mask],
        kind=kind,
        temperature=temperature,
        beta=beta,
    )
    loss = alpha * kd + (1 - alpha) * ce
    return loss, {"kd": float(kd.detach()), "ce": float(ce.detach())}
