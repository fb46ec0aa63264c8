"""Load the model a RuntimeConfig names, passing each runtime only the options it takes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from honed.errors import HonedError

if TYPE_CHECKING:
    from honed.config import RuntimeConfig
    from honed.runtime.base import Backend


def runtime_options(cfg: RuntimeConfig, batch_size: int | None = None) -> dict[str, object]:
    """The loader options cfg asks for; under backend auto, only what the user set."""
    wanted = {
        "n_threads": (cfg.threads, ("llama.cpp", "onnxruntime")),
        "n_ctx": (cfg.n_ctx, ("llama.cpp", "transformers")),
        "dtype": (None if cfg.dtype == "auto" else cfg.dtype, ("transformers",)),
        "device": (cfg.device, ("transformers",)),
        "trust_remote_code": (cfg.trust_remote_code or None, ("transformers",)),
        "batch_size": (batch_size, ("transformers", "llama.cpp")),
    }
    return {
        key: value
        for key, (value, runtimes) in wanted.items()
        if value is not None and (cfg.backend == "auto" or cfg.backend in runtimes)
    }


def load_configured(cfg: RuntimeConfig, batch_size: int | None = None) -> Backend:
    """Load cfg.model with cfg's runtime; any failure is a one-line HonedError."""
    from honed.runtime import load_backend

    if cfg.threads and cfg.backend != "llama.cpp":
        import torch

        torch.set_num_threads(cfg.threads)
    try:
        return load_backend(cfg.model, cfg.backend, **runtime_options(cfg, batch_size))
    except HonedError:
        raise
    except Exception as exc:  # model resolution and the runtimes raise many types
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise HonedError(
            f"cannot load model '{cfg.model}' ({first}): pass a hub id, a local directory, "
            "a .gguf file or an honed artifact, or try another --backend"
        ) from exc
