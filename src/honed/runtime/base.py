"""The Backend protocol: the one interface evaluate, bench, serve and chat depend on.

`load_backend(ref)` resolves a model reference (hub id, HF dir, .gguf, artifact) and returns a
Backend. A new runtime is one module that registers a loader in BACKENDS.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from honed.errors import HonedError
from honed.models.resolve import ModelSource, resolve

log = logging.getLogger(__name__)


Finished = Callable[[str, str], bool] | None  # finished(prompt, text so far): is it complete?


@dataclass(frozen=True)
class GenerationParams:
    """How to generate: greedy when temperature is 0, seeded sampling otherwise."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # finished(prompt, text so far), asked after each new token: True ends that completion
    # there with its text whole (finish_reason "stop"). The eval ends a chat reply with it
    # once the code it scores is complete.
    finished: Finished = None


@dataclass
class Completion:
    """One generated completion and what it cost.

    `text` ends before the first stop sequence. `completion_tokens` counts every token the
    model generated for it, the end-of-sequence token and a stop sequence's tokens included.
    Times run from the generate call; for a batch, `ttft_s` is when the batch's first new
    token came and `total_s` when the whole batch was done.
    """

    text: str
    prompt_tokens: int  # as fed to the model, special tokens (BOS) included
    completion_tokens: int
    ttft_s: float  # time to first token
    total_s: float
    finish_reason: str = "stop"  # "stop" (EOS or a stop sequence) or "length"
    extra: dict[str, Any] = field(default_factory=dict)
    # the new tokens as generated, where the backend keeps them (transformers): re-encoding
    # `text` need not give them back (a run of spaces as one token or as two)
    token_ids: list[int] | None = None


@dataclass
class Usage:
    """What a streamed completion cost; a backend fills it in when its stream ends.

    Counted like Completion: `completion_tokens` is every token generated (end-of-sequence
    and stop-sequence tokens included); `finish_reason` is "stop" or "length".
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "length"
    ttft_s: float | None = None


@runtime_checkable
class Backend(Protocol):
    """A loaded model that generates text."""

    name: str  # "transformers", "llama.cpp", ...
    model_ref: str
    context_size: int

    def generate(self, prompts: list[str], params: GenerationParams) -> list[Completion]:
        """Complete each prompt (batched where the runtime can)."""
        ...

    def stream(
        self, prompt: str, params: GenerationParams, usage: Usage | None = None
    ) -> Iterator[str]:
        """Yield text pieces of one completion as they are produced; fill usage at the end."""
        ...

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """The prompt text for a conversation, with the model's chat template."""
        ...

    @property
    def has_chat_template(self) -> bool:
        """True when the model ships a chat template (instruct/chat models)."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens in a text, by this model's tokenizer."""
        ...

    def close(self) -> None:
        """Release the model."""
        ...


Loader = Callable[..., Backend]
BACKENDS: dict[str, Loader] = {}


def register(name: str) -> Callable[[Loader], Loader]:
    """Decorator: make a backend loader available to load_backend by name."""

    def wrap(loader: Loader) -> Loader:
        BACKENDS[name] = loader
        return loader

    return wrap


# Backend modules, imported only when a model is loaded with them (they import torch or llama_cpp).
BACKEND_MODULES = {
    "transformers": "honed.runtime.transformers_backend",
    "llama.cpp": "honed.runtime.llamacpp_backend",
    "onnxruntime": "honed.runtime.onnx_backend",
}


def load_backend(ref: str, backend: str = "auto", **options: Any) -> Backend:
    """Load a model reference with the named backend (auto: llama.cpp for GGUF, else torch).

    Options go to the backend's loader (transformers: dtype, device, load_in_4bit,
    trust_remote_code, batch_size, n_ctx (a cap); llama.cpp: n_ctx, n_threads, seed, n_gpu_layers,
    reuse_prefix, logits_all; onnxruntime: n_threads, seed). ONNX artifacts load with
    onnxruntime under auto. An option the backend does not take is an error, except with `auto`,
    where it is ignored.
    """
    name, source = choose_backend(ref, backend)
    loader = _loader(name)
    kwargs = _loader_options(name, loader, options, strict=backend != "auto")
    try:
        return loader(source, **kwargs)
    except HonedError:
        raise
    except Exception as exc:  # the runtimes raise many types for a model they cannot read
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise HonedError(
            f"cannot load '{ref}' with the {name} backend ({first}): check that the model "
            "files are complete, or try another backend"
        ) from exc


def choose_backend(ref: str, backend: str = "auto") -> tuple[str, ModelSource]:
    """Resolve ref and pick the backend name that will run it."""
    known = sorted(set(BACKENDS) | set(BACKEND_MODULES))
    if backend != "auto" and backend not in known:
        raise HonedError(f"unknown backend '{backend}': choose auto or one of {', '.join(known)}")
    source = resolve(ref)
    is_gguf = source.kind == "gguf"
    if backend == "auto":
        if is_onnx_artifact(source):
            return "onnxruntime", source
        return ("llama.cpp" if is_gguf and llama_cpp_available() else "transformers"), source
    if backend == "llama.cpp" and not is_gguf:
        raise HonedError(
            f"the llama.cpp backend runs .gguf files and '{ref}' is not one: "
            "use --backend transformers, or export the model to GGUF first"
        )
    return backend, source


def is_onnx_artifact(source: ModelSource) -> bool:
    """True for an honed ONNX artifact (it holds onnx_meta.json)."""
    return source.kind == "hf-dir" and (Path(source.path) / "onnx_meta.json").is_file()


def llama_cpp_available() -> bool:
    """True when llama-cpp-python can be imported."""
    try:
        import llama_cpp  # noqa: F401
    except Exception:  # an ImportError, or a shared library that fails to load
        return False
    return True


def _loader(name: str) -> Loader:
    if name not in BACKENDS:
        importlib.import_module(BACKEND_MODULES[name])  # registers itself
    return BACKENDS[name]


def _loader_options(
    name: str, loader: Loader, options: dict[str, Any], *, strict: bool
) -> dict[str, Any]:
    """The options this loader takes; unknown ones are an error when strict, else dropped."""
    params = list(inspect.signature(loader).parameters)[1:]
    unknown = sorted(set(options) - set(params))
    if unknown and strict:
        raise HonedError(
            f"the {name} backend has no option {', '.join(unknown)}: "
            f"its options are {', '.join(params) or 'none'}"
        )
    if unknown:
        log.info("the %s backend ignores %s", name, ", ".join(unknown))
    return {k: v for k, v in options.items() if k in params}
