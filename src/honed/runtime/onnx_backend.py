"""The ONNX Runtime backend for honed's ONNX artifacts (`honed quantize --method onnx|onnx-int8`).

Generation runs one sequence at a time with the key/value cache the graphs take and return
(see quantize/onnx_export.py for the layout): greedy, or seeded temperature / top-p sampling,
in numpy. Text is decoded as it grows and cut at stop strings like the other backends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from honed.errors import HonedError
from honed.models.resolve import ModelSource
from honed.runtime.base import GenerationParams, register
from honed.runtime.hf_tokenizer import TokenizerMethods, context_size_of
from honed.runtime.sequential import SequentialBackend, Tally
from honed.runtime.text import token_budget

META = "onnx_meta.json"


def sample_token(logits: np.ndarray, params: GenerationParams, rng: np.random.Generator) -> int:
    """Greedy at temperature 0, else softmax(logits / T) restricted to the top-p nucleus."""
    if params.temperature <= 0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / params.temperature
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    order = np.argsort(-probs)
    keep = np.cumsum(probs[order]) - probs[order] < params.top_p  # always keeps the top token
    chosen = order[keep]
    return int(rng.choice(chosen, p=probs[chosen] / probs[chosen].sum()))


class OnnxBackend(TokenizerMethods, SequentialBackend):
    """ONNX graphs with past key values behind the Backend protocol."""

    name = "onnxruntime"
    # streams may run from several threads at once: ONNX Runtime sessions are, and each
    # stream keeps its own cache (the server shares one session between its slots)
    thread_safe = True

    def __init__(self, path: Path, *, ref: str, threads: int | None, seed: int | None) -> None:
        import onnxruntime as ort
        from transformers import AutoConfig, AutoTokenizer, GenerationConfig

        self.meta = json.loads((path / META).read_text())
        self.model_ref = ref
        self.is_seq2seq = self.meta["task"] == "seq2seq"
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1

        def session(name: str) -> Any:
            return ort.InferenceSession(str(path / name), options, ["CPUExecutionProvider"])

        self.decoder = session("decoder.onnx")
        self.encoder = session("encoder.onnx") if self.is_seq2seq else None
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        config = AutoConfig.from_pretrained(path)
        self.context_size = context_size_of(config)
        generation = GenerationConfig.from_model_config(config)
        if (path / "generation_config.json").is_file():
            generation = GenerationConfig.from_pretrained(path)
        eos = generation.eos_token_id or self.tokenizer.eos_token_id
        self._eos = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        self._start = generation.decoder_start_token_id or 0
        self._rng = np.random.default_rng(seed)
        self._past_names = [i.name for i in self.decoder.get_inputs() if "past" in i.name]

    def token_logits(self, ids: list[int]) -> np.ndarray:
        """Logits at every position of ids, float32 [len(ids), vocab] (seq2seq: teacher-forced)."""
        if self.is_seq2seq:
            states, mask = self._encode_source(ids)
            logits, _ = self._decode([self._start, *ids[:-1]], self._empty_past(), states, mask)
        else:
            token_budget(len(ids) - 1, 1, self.context_size)  # fits in the context
            logits, _ = self._decode(ids, self._empty_past(), None, None, total=len(ids))
        return logits[0].astype(np.float32)

    def close(self) -> None:
        self.decoder = self.encoder = None

    # internals

    def _prompt_tokens(self, prompt: str) -> list[int]:
        return self._encode(prompt)

    def _pieces(self, tokens: list[int], params: GenerationParams, tally: Tally) -> Iterator[str]:
        rng = np.random.default_rng(params.seed) if params.seed is not None else self._rng
        if self.is_seq2seq:
            token_budget(len(tokens), 1, self.context_size)
            budget, (states, mask) = params.max_new_tokens, self._encode_source(tokens)
            step, total = [self._start], 0
        else:
            budget = token_budget(len(tokens), params.max_new_tokens, self.context_size)
            states = mask = None
            step, total = tokens, len(tokens)
        past, generated, shown = self._empty_past(), [], ""
        while tally.tokens < budget:
            logits, past = self._decode(step, past, states, mask, total=total)
            token = sample_token(logits[0, -1], params, rng)
            tally.token()
            if token in self._eos:
                tally.ended = True
                break
            generated.append(token)
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
                yield text[len(shown) :]
                shown = text
            step, total = [token], total + 1
        if (text := self.tokenizer.decode(generated, skip_special_tokens=True)) != shown:
            yield text[len(shown) :]

    def _empty_past(self) -> dict[str, np.ndarray]:
        shape = (1, self.meta["kv_heads"], 0, self.meta["head_dim"])
        return {name: np.zeros(shape, dtype=np.float32) for name in self._past_names}

    def _encode_source(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        x = np.array([ids], dtype=np.int64)
        mask = np.ones_like(x)
        (states,) = self.encoder.run(None, {"input_ids": x, "attention_mask": mask})
        return states, mask

    def _decode(
        self,
        ids: list[int],
        past: dict[str, np.ndarray],
        states: np.ndarray | None,
        mask: np.ndarray | None,
        total: int = 0,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One decoder call: logits for ids, and the grown cache."""
        x = np.array([ids], dtype=np.int64)
        if self.is_seq2seq:
            feed = {"decoder_input_ids": x, "encoder_hidden_states": states,
                    "encoder_attention_mask": mask}  # fmt: skip
        else:
            feed = {"input_ids": x, "attention_mask": np.ones((1, total), dtype=np.int64)}
        logits, *presents = self.decoder.run(None, {**feed, **past})
        return logits, dict(zip(self._past_names, presents, strict=True))


@register("onnxruntime")
def load_onnxruntime(
    source: ModelSource, n_threads: int | None = None, seed: int | None = None
) -> OnnxBackend:
    """Load an honed ONNX artifact (n_threads: ONNX Runtime intra-op threads; default all)."""
    path = Path(source.path)
    if not (path / META).is_file():
        raise HonedError(
            f"the onnxruntime backend runs honed ONNX artifacts and '{source.ref}' is not one: "
            "make one with honed quantize --method onnx"
        )
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise HonedError("the onnxruntime backend needs: pip install onnxruntime==1.31.1") from exc
    return OnnxBackend(path, ref=source.ref, threads=n_threads, seed=seed)
