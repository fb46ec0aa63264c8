"""Latency statistics agree with numpy on known data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from honed.bench.stats import percentile, summarize


@pytest.mark.parametrize("q", [0, 10, 50, 90, 95, 99, 100])
def test_percentiles_match_numpy(q):
    data = [0.31, 0.12, 0.95, 0.44, 0.27, 0.61, 0.18, 0.73, 0.52, 0.39, 2.5]
    assert percentile(data, q) == pytest.approx(float(np.percentile(data, q)))


def test_summary_matches_numpy_and_handles_empty():
    data = list(np.random.default_rng(0).lognormal(size=257))
    s = summarize(data)
    assert s["mean"] == pytest.approx(np.mean(data))
    assert s["std"] == pytest.approx(np.std(data))
    assert s["median"] == pytest.approx(np.median(data))
    assert s["p99"] == pytest.approx(np.percentile(data, 99))
    assert s["n"] == 257
    assert math.isnan(summarize([])["median"])
