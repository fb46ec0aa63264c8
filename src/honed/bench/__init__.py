"""Benchmarks of model variants: latency statistics, throughput, memory."""
