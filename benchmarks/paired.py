"""Paired comparison of two models scored on the same problems: which problems one solved
and the other did not, and how likely a split that uneven is by chance (exact McNemar)."""

from __future__ import annotations

import json
import math
from pathlib import Path


def solved_problems(samples: Path) -> set[str]:
    """Task ids with a passing sample in an eval's samples.jsonl."""
    return {task for task, rate in pass_rates(samples).items() if rate > 0}


def paired(base: set[str] | list[str], other: set[str] | list[str]) -> tuple[int, int, float]:
    """Problems `base` solved and `other` lost, the reverse, and the two-sided exact McNemar
    p-value of that split (small p: the difference is unlikely to be chance)."""
    lost, gained = len(set(base) - set(other)), len(set(other) - set(base))
    n, k = lost + gained, min(lost, gained)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n if n else 1.0
    return lost, gained, min(1.0, 2 * tail)


def pass_rates(samples: Path) -> dict[str, float]:
    """Each task's share of passing samples in an eval's samples.jsonl (its pass@1 estimate)."""
    rows = [json.loads(line) for line in samples.read_text().splitlines() if line.strip()]
    runs: dict[str, list[bool]] = {}
    for r in rows:
        runs.setdefault(r["task_id"], []).append(r["result"] == "passed")
    return {task: sum(v) / len(v) for task, v in runs.items()}


def paired_change(base: dict[str, float], other: dict[str, float]) -> tuple[float, float]:
    """Mean per-problem change in pass rate from `base` to `other`, and the half-width of its
    95% confidence interval (normal approximation over the paired problem differences)."""
    diffs = [other[task] - rate for task, rate in base.items()]
    n = len(diffs)
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1) if n > 1 else 0.0
    return mean, 1.96 * math.sqrt(var / n)
