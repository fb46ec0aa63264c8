"""Runtimes behind one Backend protocol: transformers (torch), llama.cpp, and more."""

from honed.runtime.base import Backend, Completion, GenerationParams, Usage, load_backend

__all__ = ["Backend", "Completion", "GenerationParams", "Usage", "load_backend"]
