"""Quantize and export: int8/int4 (torchao), NF4 (bitsandbytes), ONNX (+int8), GGUF (llama.cpp)."""
