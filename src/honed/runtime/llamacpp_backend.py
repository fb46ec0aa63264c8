"""The llama.cpp backend (llama-cpp-python) for GGUF files, on the CPU.

One prompt (and every stream) decodes through `Llama.generate`, keeping the KV cache of the
prefix it shares with the previous prompt; several prompts decode together, batch_size rows
at a time, a waiting prompt taking the place of each row that ends (`llamacpp_batch`).
Tokens come from llama.cpp one by one, so every sampled token is counted and timed (the
first one gives the time to first token); text is decoded incrementally as UTF-8 and cut at
stop strings by the same helpers as the transformers backend. Sampling is exactly
GenerationParams: llama.cpp's own defaults (top_k 40, min_p 0.05) are turned off.
"""

from __future__ import annotations

import codecs
import os
import random
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np

from honed.errors import HonedError
from honed.models.resolve import ModelSource
from honed.runtime.base import Completion, GenerationParams, register
from honed.runtime.sequential import SequentialBackend, Tally
from honed.runtime.text import StopFilter, token_budget

INSTALL_HINT = (
    "the llama.cpp backend needs llama-cpp-python: pip install llama-cpp-python==0.3.36 "
    "(it builds from source, a few minutes), or use --backend transformers"
)

try:
    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
except (ImportError, OSError, RuntimeError):  # missing, or its shared library fails to load
    llama_cpp = None


class LlamaCppBackend(SequentialBackend):
    """A llama-cpp-python model behind the Backend protocol."""

    name = "llama.cpp"
    # generate keeps its batch full from the prompts it is given: pass several batches' worth
    refills_batch = True

    def __init__(
        self,
        llm: Any,
        *,
        ref: str,
        seed: int | None = None,
        reuse_prefix: bool = True,
        batch_size: int = 8,
    ) -> None:
        self.llm = llm
        self.batch_size = batch_size  # rows decoded together
        self.model_ref = ref
        self.reuse_prefix = reuse_prefix
        # Free the model when this backend goes, or at exit before Python tears modules down
        # (Llama.__del__ at that point prints a TypeError).
        self._free = weakref.finalize(self, llm.close)
        # llama.cpp rounds the context up to a multiple of 256, but llama-cpp-python's token
        # buffer keeps the size asked for: the smaller of the two is what can be used.
        self.context_size = min(llm.n_ctx(), len(llm.input_ids))
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self._rng = random.Random(seed)
        self._template = llm.metadata.get("tokenizer.chat_template")
        self._batch: Any = None  # llamacpp_batch.BatchDecoder, made at the first batch

    @property
    def has_chat_template(self) -> bool:
        return bool(self._template)

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """Render the GGUF's chat template (as llama-cpp-python's chat handler does)."""
        if not self.has_chat_template:
            raise HonedError(
                f"model '{self.model_ref}' has no chat template: use plain prompts with it"
            )
        formatter = Jinja2ChatFormatter(
            template=self._template,
            eos_token=self._token_text(self.llm.token_eos()),
            bos_token=self._token_text(self.llm.token_bos()),
            add_generation_prompt=True,
        )
        return formatter(messages=messages).prompt

    def generate(self, prompts: list[str], params: GenerationParams) -> list[Completion]:
        """One prompt on its own; several batch_size at a time, each row ending on its own."""
        if len(prompts) < 2 or self.batch_size < 2:
            return super().generate(prompts, params)
        rows = [self.batch_row(prompt, params) for prompt in prompts]
        return self.batch_decoder().run(rows, self.batch_size)

    can_batch = True  # concurrent requests can decode together (`batch_row`)

    def batch_decoder(self) -> Any:
        """The `llamacpp_batch.BatchDecoder` of this model (its multi-sequence context)."""
        if self._batch is None:
            from honed.runtime.llamacpp_batch import BatchDecoder

            self._batch = BatchDecoder(self.llm, self._vocab)
        return self._batch

    def count_tokens(self, text: str) -> int:
        """Tokens of the text itself, without a BOS token."""
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def tokenize(self, text: str) -> list[int]:
        """The token ids a prompt is fed to the model as (BOS if the model asks for it)."""
        return self._prompt_tokens(text)

    def token_logits(self, ids: list[int]) -> np.ndarray:
        """Logits at every position of ids, float32 [len(ids), vocab] (load with logits_all)."""
        if not self.llm._logits_all:
            raise HonedError("internal: load the llama.cpp backend with logits_all=True")
        token_budget(len(ids) - 1, 1, self.context_size)  # fits in the context
        self.llm.reset()
        self.llm.eval(ids)
        return np.array(self.llm.scores[: len(ids)], dtype=np.float32)

    def model_facts(self) -> dict[str, Any]:
        """Chat template, EOS and end-of-generation tokens as the GGUF file declares them."""
        n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        eog = [i for i in range(n_vocab) if llama_cpp.llama_vocab_is_eog(self._vocab, i)]
        eos = self.llm.token_eos()
        return {
            "chat_template": self._template,
            "eos_token_id": eos if eos >= 0 else None,
            "stop_token_ids": eog,
        }

    def batch_row(self, prompt: str, params: GenerationParams) -> Any:
        """A batch row (`llamacpp_batch.Row`) for the prompt, sampling as the one-prompt path
        would; a prompt that leaves no room in the context is a HonedError."""
        from honed.runtime.llamacpp_batch import Row, sampler_for

        tokens = self._prompt_tokens(prompt)
        budget = token_budget(len(tokens), params.max_new_tokens, self.context_size)
        sampler = sampler_for(params, self._seed(params))
        stops = StopFilter(params.stop)
        return Row(prompt, tokens, budget, stops, params.finished, sampler=sampler,
                   detokenize=self.llm.detokenize)  # fmt: skip

    def close(self) -> None:
        self._batch = None  # its context closes with the model
        self._free()
        self.llm = None

    # internals

    def _prompt_tokens(self, prompt: str) -> list[int]:
        """The prompt as llama-cpp-python's completion API tokenizes it (BOS if the model asks)."""
        tokens = self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        if not tokens:
            raise HonedError("cannot generate from an empty prompt: give the model some text")
        return tokens

    def _pieces(self, tokens: list[int], params: GenerationParams, tally: Tally) -> Iterator[str]:
        """Decoded text of each sampled token, complete UTF-8 characters only."""
        budget = token_budget(len(tokens), params.max_new_tokens, self.context_size)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.llm.set_seed(self._seed(params))
        if not self.reuse_prefix:
            self.llm.reset()  # evaluate the whole prompt, not only what differs from the last
        for token in self.llm.generate(tokens, **self._sampling(params)):
            tally.token()
            if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                tally.ended = True
                break
            if piece := decoder.decode(self.llm.detokenize([token])):
                yield piece
            if tally.tokens >= budget:
                break
        if tail := decoder.decode(b"", final=True):
            yield tail

    def _seed(self, params: GenerationParams) -> int:
        return params.seed if params.seed is not None else self._rng.randrange(2**32)

    def _sampling(self, params: GenerationParams) -> dict[str, Any]:
        """Greedy at temperature 0, else temperature and top_p only (no top_k, min_p)."""
        return {
            "temp": params.temperature,
            "top_p": params.top_p,
            "top_k": 0,
            "min_p": 0.0,
            "typical_p": 1.0,
            "repeat_penalty": 1.0,
        }

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")


def default_threads() -> int:
    """The CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@register("llama.cpp")
def load_llamacpp(
    source: ModelSource,
    n_ctx: int = 4096,
    n_threads: int | None = None,
    seed: int | None = None,
    n_gpu_layers: int = 0,
    reuse_prefix: bool = True,
    logits_all: bool = False,
    batch_size: int = 8,
) -> LlamaCppBackend:
    """Load a GGUF file (n_ctx 0: the model's training context; n_gpu_layers -1: all).

    reuse_prefix keeps the KV cache of the prompt prefix shared with the previous call, as
    llama.cpp does by default; turn it off to time every prompt from scratch. logits_all keeps
    the logits of every position (for token_logits; costs n_ctx x vocab floats). batch_size
    is how many prompts of one generate call decode together (1: one after another).
    """
    if llama_cpp is None:
        raise HonedError(INSTALL_HINT)
    if source.kind != "gguf":
        raise HonedError(f"the llama.cpp backend runs .gguf files; '{source.ref}' is not one")
    if batch_size < 1:
        raise HonedError(f"batch_size must be at least 1, got {batch_size}")
    threads = n_threads or default_threads()
    llm = llama_cpp.Llama(
        model_path=source.path,
        n_ctx=n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        n_gpu_layers=n_gpu_layers,
        logits_all=logits_all,
        verbose=False,
    )
    return LlamaCppBackend(
        llm, ref=source.ref, seed=seed, reuse_prefix=reuse_prefix, batch_size=batch_size
    )
