"""Config merging, overrides and one-line errors."""

from __future__ import annotations

import pytest

from honed.config import FinetuneConfig, build_config, parse_overrides
from honed.errors import HonedError


def test_precedence_defaults_recipe_overrides_flags(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("finetune:\n  method: full\n  max_steps: 5\n  lora_r: 4\n")
    cfg = build_config(
        FinetuneConfig, recipe, ["max_steps=7", "learning-rate=1e-3"], {"lora_r": "8", "data": None}
    )
    assert (cfg.method, cfg.max_steps, cfg.lora_r, cfg.learning_rate) == ("full", 7, 8, 1e-3)
    assert cfg.data == "mbpp"  # untouched default


def test_overrides_parse_yaml_values():
    assert parse_overrides(["a=1", "b=true", "c=x y", "d=null"]) == {
        "a": 1,
        "b": True,
        "c": "x y",
        "d": None,
    }
    with pytest.raises(HonedError, match="key=value"):
        parse_overrides(["nonsense"])


def test_unknown_key_and_bad_value_are_one_line_errors(tmp_path):
    with pytest.raises(HonedError, match="unknown config key 'lr'.*valid keys are"):
        build_config(FinetuneConfig, None, ["lr=1"], {})
    with pytest.raises(HonedError, match="bad value for 'method': 'xlora'"):
        build_config(FinetuneConfig, None, ["method=xlora"], {})
    with pytest.raises(HonedError, match="bad value for 'batch_size'"):
        build_config(FinetuneConfig, None, [], {"batch_size": "0"})


def test_recipe_errors(tmp_path):
    with pytest.raises(HonedError, match="not found"):
        build_config(FinetuneConfig, tmp_path / "none.yaml", [], {})
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(HonedError, match="not valid YAML"):
        build_config(FinetuneConfig, bad, [], {})


def test_every_field_is_documented():
    for name, info in FinetuneConfig.model_fields.items():
        assert info.description, name


def test_one_bare_argument_is_the_model():
    cfg = build_config(FinetuneConfig, None, ["org/model", "max_steps=3"], {})
    assert (cfg.model, cfg.max_steps) == ("org/model", 3)
    with pytest.raises(HonedError, match="key=value"):
        build_config(FinetuneConfig, None, ["a", "b"], {})
