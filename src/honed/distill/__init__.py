"""Distillation: a big teacher into a small student (logit KD, or teacher-generated data)."""
