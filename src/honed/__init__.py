"""honed: fine-tune, distill, quantize, evaluate, benchmark and serve small language models."""

__version__ = "0.1.0"
