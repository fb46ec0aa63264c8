"""Text metrics against known values, text-task rows, and perplexity against a hand computation."""

from __future__ import annotations

import json
import math

import pytest

from honed.config import EvalConfig
from honed.errors import HonedError
from honed.evaluate import textmetrics as tm

SENT = "the quick brown fox jumps over the lazy dog"


def test_exact_match_ignores_spacing_only():
    assert tm.exact_match(["a  b", "A b", "c"], ["a b", "a b", "c"]) == pytest.approx(200 / 3)
    assert tm.exact_match([], []) == 0.0


def test_identical_text_scores_full_marks():
    scores = tm.text_scores([SENT, SENT], [SENT, SENT])
    assert scores == {"exact_match": 100.0, "bleu": 100.0, "chrf": 100.0, "rouge_l": 100.0}


def test_partial_overlap_is_between():
    scores = tm.text_scores(["the quick brown fox"], [SENT])
    assert scores["exact_match"] == 0.0
    assert 0 < scores["chrf"] < 100 and 0 <= scores["bleu"] < 100
    assert scores["rouge_l"] == pytest.approx(100 * 2 * (4 / 4 * 4 / 9) / (4 / 4 + 4 / 9), 1e-3)
    with pytest.raises(ValueError):
        tm.text_scores(["a"], [])


def test_text_examples_from_a_file_and_bad_rows(tmp_path):
    data = tmp_path / "d.jsonl"
    rows = [{"input": f"q{i}", "reference": f"a{i}"} for i in range(5)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    split, examples = tm.text_examples(str(data), EvalConfig(limit=3))
    assert split == "train" and examples[0] == tm.TextExample("q0", "a0") and len(examples) == 3
    data.write_text(json.dumps({"input": "q", "reference": 3}) + "\n")
    with pytest.raises(HonedError, match="d.jsonl:1: 'reference' is not a non-empty string"):
        tm.text_examples(str(data), EvalConfig())
    with pytest.raises(HonedError, match="needs data"):
        tm.text_examples("", EvalConfig())


def test_builtin_quotes_use_the_test_split():
    split, examples = tm.text_examples("quotes", EvalConfig())
    assert split == "test" and examples and examples[0].prompt.startswith("Write a quote by")


def test_perplexity_matches_a_hand_computation(tiny_causal):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_causal)
    tok = AutoTokenizer.from_pretrained(tiny_causal)
    prompt, answer = "add one and two", " four"
    result = tm.perplexity(model, tok, [(prompt, answer)], is_seq2seq=False)
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    ids = tok(prompt + answer, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1]
    nll = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="none")[n_prompt - 1 :]
    assert result["tokens"] == len(nll)
    assert result["perplexity"] == pytest.approx(math.exp(float(nll.mean())), rel=1e-3)
