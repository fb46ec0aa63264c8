"""The ONNX backend's numpy sampler: greedy, seeded, and the top-p nucleus."""

from __future__ import annotations

import numpy as np

from honed.runtime.base import GenerationParams
from honed.runtime.onnx_backend import sample_token


def test_temperature_zero_is_argmax():
    logits = np.array([0.1, 3.0, 2.9])
    assert sample_token(logits, GenerationParams(temperature=0), np.random.default_rng(0)) == 1


def test_sampling_is_seeded_and_stays_in_the_nucleus():
    logits = np.log(np.array([0.6, 0.3, 0.05, 0.05]))
    params = GenerationParams(temperature=1.0, top_p=0.8)
    draws = [sample_token(logits, params, np.random.default_rng(s)) for s in range(200)]
    assert set(draws) == {0, 1}  # 0.6 + 0.3 covers 0.8; the tail is never drawn
    again = [sample_token(logits, params, np.random.default_rng(s)) for s in range(200)]
    assert draws == again
