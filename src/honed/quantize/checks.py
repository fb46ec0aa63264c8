"""Check an export against its source: greedy agreement, next-token KL, size, special tokens.

Users report silent quality drops after conversion (a lost chat template, a wrong EOS, a bad
quantization). Every export is compared with the model it came from, through the same Backend
protocol the other stages use:

- greedy output on fixed prompts: exact-match rate, where the first differing token is, and
  how far the source itself ranks the export's token there below its own choice (a small
  quantization error flips near-ties, which a small model fine-tuned on little data has many
  of: those flips are counted apart, and only the other disagreements raise a warning);
- mean KL(source || export) of the next-token distributions over a fixed text;
- tokenization of that text, the chat template, EOS and the end-of-generation tokens;
- size on disk of both.

Anything that changed, or an agreement or KL past its threshold, becomes a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from honed.runtime.base import Backend, Completion, GenerationParams

PROMPTS = (
    'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
    "def is_palindrome(text: str) -> bool:\n",
    "import json\n\n\ndef load_config(path):\n",
    "The capital of France is",
    "Write a short sentence about the sea:",
    "Q: What is 12 plus 30?\nA:",
    "class Stack:\n    def __init__(self):\n",
    "Translate to French: good morning",
)
REFERENCE_TEXT = (
    "def binary_search(items, target):\n"
    '    """Return the index of target in the sorted list items, or -1."""\n'
    "    lo, hi = 0, len(items) - 1\n"
    "    while lo <= hi:\n"
    "        mid = (lo + hi) // 2\n"
    "        if items[mid] == target:\n"
    "            return mid\n"
    "        if items[mid] < target:\n"
    "            lo = mid + 1\n"
    "        else:\n"
    "            hi = mid - 1\n"
    "    return -1\n\n"
    "Small language models answer quickly on cheap hardware, and careful quantization keeps "
    "most of what they know."
)


@dataclass(frozen=True)
class Thresholds:
    """When a check becomes a warning."""

    min_agreement: float = 0.5  # greedy agreement over the fixed prompts, near-ties apart
    max_kl: float = 0.1  # mean KL(source || export), nats per token
    near_tie_nats: float = 1.0  # a flip where the source ranks both tokens this close


def size_on_disk(path: Path) -> int:
    """Bytes of a file, or of every file under a directory."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def greedy_agreement(
    source: Backend, export: Backend, prompts: tuple[str, ...], max_new_tokens: int,
    near_tie_nats: float = Thresholds.near_tie_nats,
) -> dict[str, Any]:  # fmt: skip
    """Exact-match rate of greedy completions, where each pair first differs, and the
    source's log-probability margin there between its own token and the export's.

    The position is in tokens of the source's completion (the common prefix, counted by the
    source tokenizer); None where the two completions are equal. `agreement` counts a pair
    as agreeing when it is equal or first differs at a near-tie (margin within
    near_tie_nats): the source nearly chose the export's token itself.
    """
    params = GenerationParams(max_new_tokens=max_new_tokens, temperature=0.0)
    ours = source.generate(list(prompts), params)
    theirs = export.generate(list(prompts), params)
    divergence = [_divergence(source, a.text, b.text) for a, b in zip(ours, theirs, strict=True)]
    margins = [
        None if d is None else flip_margin(source, p, a, b.text)
        for p, a, b, d in zip(prompts, ours, theirs, divergence, strict=True)
    ]
    same = sum(d is None for d in divergence)
    ties = sum(m is not None and m <= near_tie_nats for m in margins)
    return {
        "prompts": len(prompts),
        "max_new_tokens": max_new_tokens,
        "exact_match": same / len(prompts),
        "near_ties": ties,
        "agreement": (same + ties) / len(prompts),
        "first_divergence": divergence,
        "margin_nats": margins,
        "examples": [
            {"prompt": p, "source": a.text, "export": b.text}
            for p, a, b, d in zip(prompts, ours, theirs, divergence, strict=True)
            if d is not None
        ][:3],
    }


def _divergence(source: Backend, ours: str, theirs: str) -> int | None:
    at = first_difference(ours, theirs)
    return None if at is None else source.count_tokens(ours[:at])


def flip_margin(source: Backend, prompt: str, ours: Completion, theirs: str) -> float | None:
    """How many nats below its own token the source ranks the export's, at the first token
    where the two completions differ; None where one completion is a prefix of the other (one
    stopped: no token to compare), and for text-to-text sources, whose answers do not
    continue the prompt (their flips count as disagreeing). The source's side is the tokens
    it generated where its backend keeps them, so the margin is read in the context it
    chose from; else (and always for the export's side) the text encoded again."""
    if getattr(source, "is_seq2seq", False):
        return None
    if ours.token_ids and hasattr(source, "decode_ids"):
        return _margin_on_ids(source, source.tokenize(prompt), ours.token_ids, theirs)
    a, b = source.tokenize(prompt + ours.text), source.tokenize(prompt + theirs)
    at = first_difference(a, b)
    if at is None or at >= min(len(a), len(b)) or at == 0:
        return None
    return _margin(source, a[:at], a[at], b[at])


def _margin_on_ids(source: Any, context: list[int], ids: list[int], theirs: str) -> float | None:
    """The margin at the first generated token whose text leaves the export's completion."""
    for n in range(len(ids)):
        text = source.decode_ids(ids[: n + 1])
        if text.endswith("\ufffd") or theirs.startswith(text):  # \ufffd: a character split
            continue
        shared = source.decode_ids(ids[:n])
        rest = source.text_ids(theirs[len(shared) :]) if theirs.startswith(shared) else []
        return _margin(source, context + ids[:n], ids[n], rest[0]) if rest else None
    return None


def _margin(source: Backend, context: list[int], own: int, other: int) -> float:
    logits = source.token_logits(context)[-1].astype(np.float64)
    return float(logits[own] - logits[other])


def first_difference(a: str | list[int], b: str | list[int]) -> int | None:
    """Index of the first item where two sequences differ (None when equal)."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def mean_kl(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    """Mean over positions of KL(softmax p || softmax q), on the vocabulary both share."""
    vocab = min(p_logits.shape[-1], q_logits.shape[-1])
    logp = log_softmax(p_logits[:, :vocab].astype(np.float64))
    logq = log_softmax(q_logits[:, :vocab].astype(np.float64))
    return float(np.mean(np.sum(np.exp(logp) * (logp - logq), axis=-1)))


def log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def next_token_kl(source: Backend, export: Backend, text: str) -> dict[str, Any]:
    """KL of the export's next-token distributions from the source's, on the source's tokens
    (as many as both contexts hold)."""
    ids = source.tokenize(text)[: min(source.context_size, export.context_size)]
    return {"tokens": len(ids), "mean_kl": mean_kl(source.token_logits(ids),
                                                   export.token_logits(ids))}  # fmt: skip


def special_tokens(source: Backend, export: Backend, text: str) -> dict[str, Any]:
    """Whether tokenization, chat template, EOS and stop tokens survived the export."""
    ours, theirs = source.model_facts(), export.model_facts()
    missing = sorted(set(ours["stop_token_ids"]) - set(theirs["stop_token_ids"]))
    return {
        "tokenization_matches": source.tokenize(text) == export.tokenize(text),
        "chat_template_matches": (ours["chat_template"] or "") == (theirs["chat_template"] or ""),
        "eos_matches": ours["eos_token_id"] == theirs["eos_token_id"],
        "eos": [ours["eos_token_id"], theirs["eos_token_id"]],
        "stop_tokens_missing": missing,
    }


def warnings_for(checks: dict[str, Any], limits: Thresholds) -> list[str]:
    """Loud one-line warnings for everything that changed or fell past a threshold."""
    out = []
    tokens = checks["special_tokens"]
    if not tokens["tokenization_matches"]:
        out.append("tokenization changed: the export splits the reference text differently")
    if not tokens["chat_template_matches"]:
        out.append("chat template changed (or was lost): chat prompts will differ")
    if not tokens["eos_matches"]:
        source, export = tokens["eos"]
        out.append(f"EOS token changed: source {source}, export {export}")
    if tokens["stop_tokens_missing"]:
        out.append(f"stop tokens lost in the export: {tokens['stop_tokens_missing']}")
    greedy = checks["agreement"]
    agreement = greedy.get("agreement", greedy["exact_match"])
    if agreement < limits.min_agreement:
        out.append(
            f"greedy agreement {agreement:.0%} is below {limits.min_agreement:.0%} (exact "
            f"match {greedy['exact_match']:.0%}; flips at near-ties within "
            f"{limits.near_tie_nats} nats count as agreeing)"
        )
    kl = checks.get("kl", {}).get("mean_kl")
    if kl is not None and kl > limits.max_kl:
        out.append(f"mean next-token KL {kl:.4f} is above {limits.max_kl}")
    return out


def run_checks(
    source: Backend,
    export: Backend,
    *,
    source_path: Path,
    export_path: Path,
    limits: Thresholds,
    n_prompts: int = len(PROMPTS),
    max_new_tokens: int = 32,
) -> dict[str, Any]:
    """Every check of the module, with the warnings they raise."""
    checks: dict[str, Any] = {
        "agreement": greedy_agreement(
            source, export, PROMPTS[:n_prompts], max_new_tokens, limits.near_tie_nats
        ),
        "kl": next_token_kl(source, export, REFERENCE_TEXT),
        "special_tokens": special_tokens(source, export, REFERENCE_TEXT),
        "size_bytes": {"source": size_on_disk(source_path), "export": size_on_disk(export_path)},
        "thresholds": {
            "min_agreement": limits.min_agreement,
            "max_kl": limits.max_kl,
            "near_tie_nats": limits.near_tie_nats,
        },
    }
    checks["warnings"] = warnings_for(checks, limits)
    return checks
