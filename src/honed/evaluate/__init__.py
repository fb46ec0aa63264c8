"""Evaluation: pass@k for code, the sandbox that runs it, and text metrics."""
