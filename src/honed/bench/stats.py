"""Latency statistics: mean, median, std, p90/p95/p99 (linear interpolation, as numpy)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Sequence[float]) -> dict[str, float]:
    """mean, median, std (population), p90, p95, p99, min, max and n of a sample."""
    n = len(values)
    mean = sum(values) / n if n else math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / n) if n else math.nan
    return {
        "n": n,
        "mean": mean,
        "median": percentile(values, 50),
        "std": std,
        "p90": percentile(values, 90),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "min": min(values) if n else math.nan,
        "max": max(values) if n else math.nan,
    }
