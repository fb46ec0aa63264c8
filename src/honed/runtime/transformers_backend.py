"""The transformers (torch) backend: batched, left-padded generation on CPU or CUDA.

Loads any model honed's model layer can load (HF dirs, hub ids, adapters merged into their
base, GGUF dequantized to float, bitsandbytes 4-bit). Generation follows GenerationParams
exactly: the model's own sampling defaults (top_k, repetition penalty, ...) are not applied.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from transformers import GenerationConfig, StoppingCriteriaList

from honed.errors import HonedError
from honed.models.load import load_model
from honed.models.resolve import ModelSource
from honed.runtime import row_decode
from honed.runtime.base import Completion, GenerationParams, Usage, register
from honed.runtime.hf_tokenizer import TokenizerMethods, context_size_of
from honed.runtime.packed_cpu import fast_compute_dtype, use_fast_cpu_kernels
from honed.runtime.text import (
    StopFilter,
    clean_stops,
    filter_stream,
    token_budget,
    truncate_at_stop,
)
from honed.runtime.transformers_hooks import DECODE, StepWatch, TextQueue, stop_checker

DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def pick_device(device: str) -> torch.device:
    """`auto` is the CUDA GPU when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        target = torch.device(device)
    except RuntimeError as exc:
        raise HonedError(f"unknown device '{device}': use auto, cpu, cuda or cuda:N") from exc
    if target.type == "cuda" and not torch.cuda.is_available():
        raise HonedError(f"device '{device}' asked for, but torch sees no CUDA GPU: use cpu")
    return target


class TransformersBackend(TokenizerMethods):
    """A transformers model and tokenizer behind the Backend protocol."""

    name = "transformers"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        ref: str,
        is_seq2seq: bool,
        batch_size: int = 8,
        n_ctx: int | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_ref = ref
        self.is_seq2seq = is_seq2seq
        self.batch_size = max(1, batch_size)
        own = context_size_of(model.config)
        self.context_size = min(own, n_ctx) if n_ctx else own  # n_ctx caps it (0: its own)
        tokenizer.padding_side = "right" if is_seq2seq else "left"
        self._token_ids = self._special_token_ids()
        # Only the special token ids stay, so GenerationParams alone decide how to sample.
        self.model.generation_config = GenerationConfig(**self._token_ids)
        eos = self._token_ids["eos_token_id"]
        self._eos = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        self._row_decode = row_decode.supports_row_decode(self.model)

    def _special_token_ids(self) -> dict[str, Any]:
        own = self.model.generation_config
        return {
            "eos_token_id": own.eos_token_id or self.tokenizer.eos_token_id,
            "pad_token_id": self.tokenizer.pad_token_id,
            "bos_token_id": own.bos_token_id,
            "decoder_start_token_id": own.decoder_start_token_id,
        }

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def generate(self, prompts: list[str], params: GenerationParams) -> list[Completion]:
        """Complete prompts in batches of similar length; results keep the prompts' order.

        Causal models decode with honed's row decoder (a finished row leaves the batch, each
        row samples with its own generator seeded with params.seed); text-to-text models go
        through transformers' `generate`.
        """
        self._seed(params)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: dict[int, Completion] = {}
        for at in range(0, len(order), self.batch_size):
            chunk = order[at : at + self.batch_size]
            done = self._generate_batch([prompts[i] for i in chunk], params)
            results.update(zip(chunk, done, strict=True))
        return [results[i] for i in range(len(prompts))]

    def stream(
        self, prompt: str, params: GenerationParams, usage: Usage | None = None
    ) -> Iterator[str]:
        """Yield the completion's text as it grows, cut at the first stop string."""
        started = time.perf_counter()
        self._seed(params)
        stop = clean_stops(params.stop)
        encoded = self._encode(prompt)
        inputs, max_new = self._inputs([encoded], params)
        watch = StepWatch(self.tokenizer, stop, [prompt], params.finished)
        streamer = TextQueue(self.tokenizer)
        errors: list[BaseException] = []
        kwargs = self._generate_kwargs(inputs, params, max_new, watch)
        thread = threading.Thread(target=self._run, args=(kwargs, streamer, errors), daemon=True)
        thread.start()
        stops = StopFilter(stop)
        try:
            yield from filter_stream(streamer, stops)
        finally:
            watch.cancelled = True
            thread.join()
            if usage is not None:
                self._fill_usage(usage, len(encoded), streamer.ids, stops.stopped)
                if watch.first_token_at is not None:
                    usage.ttft_s = watch.first_token_at - started
        if errors:
            raise errors[0]

    def _fill_usage(self, usage: Usage, prompt_tokens: int, ids: list[int], stopped: bool) -> None:
        eos_at = next((n for n, token in enumerate(ids) if token in self._eos), None)
        usage.prompt_tokens = prompt_tokens
        usage.completion_tokens = len(ids) if eos_at is None else eos_at + 1
        usage.finish_reason = "stop" if stopped or eos_at is not None else "length"

    @property
    def can_batch(self) -> bool:
        """Whether concurrent requests can decode together in this model (`batch_row`)."""
        return self.batch_blocker is None

    @property
    def batch_blocker(self) -> str | None:
        """Why concurrent requests cannot decode together in this model, or None."""
        from honed.runtime.row_join import joining_blocker

        if self.is_seq2seq:
            return "a text-to-text model decodes each request in a copy of its own"
        return joining_blocker(self.model, self.context_size)

    def batch_decoder(self) -> Any:
        """The `row_join.JoinDecoder` of this model, which the server's scheduler runs."""
        from honed.runtime.row_join import JoinDecoder

        return JoinDecoder(self.model, self._eos)

    def batch_row(self, prompt: str, params: GenerationParams) -> Any:
        """A batch row (`row_join.JoinRow`) for the prompt, sampling as `generate` would; a
        prompt that leaves no room in the context is a HonedError."""
        from honed.runtime.row_join import JoinRow

        tokens = self._encode(prompt)
        budget = token_budget(len(tokens), params.max_new_tokens, self.context_size)
        pick = row_decode.make_sampler(params, 1, self.device)  # its own seeded generator
        row = JoinRow(prompt, tokens, budget, StopFilter(params.stop), params.finished)
        row.pick, row.tokenizer = pick, self.tokenizer
        return row

    def token_logits(self, ids: list[int]) -> np.ndarray:
        """Logits at every position of ids, float32 [len(ids), vocab].

        For text-to-text models the encoder reads ids and the decoder is teacher-forced on
        them (shifted right), so two variants of a model are compared on the same work.
        """
        x = torch.tensor([ids], device=self.device)
        with torch.inference_mode():
            if self.is_seq2seq:
                start = self._token_ids["decoder_start_token_id"] or 0
                dec = torch.tensor([[start, *ids[:-1]]], device=self.device)
                out = self.model(input_ids=x, decoder_input_ids=dec)
            else:
                out = self.model(input_ids=x)
        return out.logits[0].float().cpu().numpy()

    def close(self) -> None:
        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # internals

    def _run(self, kwargs: dict[str, Any], streamer: TextQueue, errors: list) -> None:
        try:
            with torch.inference_mode():
                self.model.generate(streamer=streamer, **kwargs)
        except BaseException as exc:  # hand it to the reading thread, which re-raises it
            errors.append(exc)
            streamer.end()

    def _seed(self, params: GenerationParams) -> None:
        if params.temperature > 0 and params.seed is not None:
            torch.manual_seed(params.seed)

    def _inputs(
        self, encoded: list[list[int]], params: GenerationParams
    ) -> tuple[dict[str, torch.Tensor], int]:
        """Padded tensors on the model's device, and how many new tokens they have room for."""
        longest = max(len(ids) for ids in encoded)
        if self.is_seq2seq:
            token_budget(longest, 1, self.context_size)  # the encoder must take the prompt
            max_new = params.max_new_tokens
        else:
            max_new = token_budget(longest, params.max_new_tokens, self.context_size)
        batch = self.tokenizer.pad({"input_ids": encoded}, padding=True, return_tensors="pt")
        return {k: v.to(self.device) for k, v in batch.items()}, max_new

    def _generate_kwargs(
        self,
        inputs: dict[str, torch.Tensor],
        params: GenerationParams,
        max_new: int,
        watch: StepWatch,
    ) -> dict[str, Any]:
        sample = params.temperature > 0
        sampling = {"temperature": params.temperature, "top_p": params.top_p, "top_k": 0}
        config = GenerationConfig(
            **self._token_ids,
            max_new_tokens=max_new,
            do_sample=sample,
            **(sampling if sample else {}),
        )
        stopping = StoppingCriteriaList([watch])
        return {**inputs, "generation_config": config, "stopping_criteria": stopping}

    def _generate_batch(self, prompts: list[str], params: GenerationParams) -> list[Completion]:
        started = time.perf_counter()
        stop = clean_stops(params.stop)
        encoded = [self._encode(p) for p in prompts]
        inputs, max_new = self._inputs(encoded, params)
        with torch.inference_mode():
            if self._row_decode:
                rows, first_at = self._decode_rows(inputs, max_new, params, stop, prompts)
            else:
                rows, first_at = self._generate_rows(inputs, max_new, params, stop, prompts)
        total = time.perf_counter() - started
        timing = {"ttft_s": (first_at or started + total) - started, "total_s": total}
        return [
            self._completion(ids, stopped_at, stop, len(prompt), timing)
            for (ids, stopped_at), prompt in zip(rows, encoded, strict=True)
        ]

    def _decode_rows(
        self, inputs: dict[str, torch.Tensor], max_new: int, params: GenerationParams,
        stop: tuple[str, ...], prompts: list[str],
    ) -> tuple[list[tuple[list[int], int | None]], float | None]:  # fmt: skip
        """New ids per row from honed's decoder, which drops each row as it finishes."""
        checker = stop_checker(self.tokenizer, stop, prompts, params.finished)
        out = row_decode.decode(self.model, inputs, max_new, params, eos=self._eos, stopped=checker)
        ends = [len(ids) if end else None for ids, end in zip(out.ids, out.stopped, strict=True)]
        return list(zip(out.ids, ends, strict=True)), out.first_token_at

    def _generate_rows(
        self, inputs: dict[str, torch.Tensor], max_new: int, params: GenerationParams,
        stop: tuple[str, ...], prompts: list[str],
    ) -> tuple[list[tuple[list[int], int | None]], float | None]:  # fmt: skip
        """New ids per row, and where a stop string cut each, from transformers' `generate`."""
        watch = StepWatch(self.tokenizer, stop, prompts, params.finished)
        out = self.model.generate(**self._generate_kwargs(inputs, params, max_new, watch))
        new = out[:, 1:] if self.is_seq2seq else out[:, inputs["input_ids"].shape[1] :]
        rows = [(new[row].tolist(), watch.stopped_at.get(row)) for row in range(len(new))]
        return rows, watch.first_token_at

    def _completion(
        self,
        ids: list[int],
        stopped_at: int | None,
        stop: tuple[str, ...],
        prompt_tokens: int,
        timing: dict[str, float],
    ) -> Completion:
        """One row's new tokens, cut where it finished (end of sequence or stop string)."""
        ids = ids[:stopped_at] if stopped_at is not None else ids
        eos_at = next((n for n, token in enumerate(ids) if token in self._eos), None)
        ids = ids if eos_at is None else ids[: eos_at + 1]
        text, stopped = truncate_at_stop(self.tokenizer.decode(ids, **DECODE), stop)
        ended = stopped or stopped_at is not None or eos_at is not None  # stopped_at: finished
        reason = "stop" if ended else "length"
        return Completion(
            text, prompt_tokens, len(ids), finish_reason=reason, token_ids=ids, **timing
        )


@register("transformers")
def load_transformers(
    source: ModelSource,
    dtype: str = "auto",
    device: str = "auto",
    load_in_4bit: bool = False,
    trust_remote_code: bool = False,
    batch_size: int = 8,
    n_ctx: int | None = None,
) -> TransformersBackend:
    """Load a model source for torch generation (dtype: auto, fp32, bf16, fp16; n_ctx: a
    context cap below the model's own, 0 or None for its own).

    On a CPU, torchao int8 and int4 weight-only linears run through aten's fused kernels
    with bf16 activations (and bitsandbytes NF4 linears compute in bf16) where the CPU has
    native bf16, unless fp32 is asked for explicitly:
    dtype fp32 (and a CPU without bf16) keeps torchao's own fp32 path, slower and
    numerically the reference.
    """
    target = pick_device(device)
    dtype = DTYPE_ALIASES.get(dtype, dtype)
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise HonedError(f"unknown dtype '{dtype}': use auto, fp32, bf16 or fp16")
    exact_fp32 = dtype == "float32"
    if dtype == "auto" and target.type == "cpu":
        dtype = "float32"
    loaded = load_model(
        source, dtype=dtype, load_in_4bit=load_in_4bit, trust_remote_code=trust_remote_code
    )
    model = loaded.model
    if next(model.parameters()).device != target:
        model = model.to(target)
    if target.type == "cpu" and not exact_fp32 and fast_compute_dtype() == torch.bfloat16:
        use_fast_cpu_kernels(model)  # torchao int8/int4 fused kernels, NF4 in bf16
    return TransformersBackend(
        model,
        loaded.tokenizer,
        ref=source.ref,
        is_seq2seq=loaded.is_seq2seq,
        batch_size=batch_size,
        n_ctx=n_ctx,
    )
