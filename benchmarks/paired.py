"""Paired comparison of two models scored on the same problems: which problems one solved
and the other did not, and how likely a split that uneven is by chance (exact McNemar)."""

from __future__ import annotations

import json
import math
from pathlib import Path


def solved_problems(samples: Path) -> set[str]:
    """Task ids with a passing sample in an eval's samples.jsonl."""
    rows = (json.loads(line) for line in samples.read_text().splitlines() if line.strip())
    return {r["task_id"] for r in rows if r["result"] == "passed"}


def paired(base: set[str] | list[str], other: set[str] | list[str]) -> tuple[int, int, float]:
    """Problems `base` solved and `other` lost, the reverse, and the two-sided exact McNemar
    p-value of that split (small p: the difference is unlikely to be chance)."""
    lost, gained = len(set(base) - set(other)), len(set(other) - set(base))
    n, k = lost + gained, min(lost, gained)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n if n else 1.0
    return lost, gained, min(1.0, 2 * tail)
