"""Training stages: fine-tuning (full, LoRA, QLoRA) and its callbacks, samples and plots."""
