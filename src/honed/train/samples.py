"""Generations for held-out prompts before and after training, written side by side."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from honed.data.format import Example, answer_text, render_prompt


@torch.no_grad()
def generate_texts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    max_new_tokens: int,
    is_seq2seq: bool,
    batch_size: int = 4,
) -> list[str]:
    """Greedy completions for prompts, batched with left padding (causal LMs)."""
    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left" if not is_seq2seq else "right"
    outputs: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start : start + batch_size]
            enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=is_seq2seq)
            enc = enc.to(model.device)
            gen = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
            new = gen if is_seq2seq else gen[:, enc["input_ids"].shape[1] :]
            outputs += tokenizer.batch_decode(new, skip_special_tokens=True)
    finally:
        model.train(was_training)
        tokenizer.padding_side = side
    return outputs


def sample_prompts(
    examples: list[Example], tokenizer: PreTrainedTokenizerBase, n: int
) -> list[str]:
    """The first n held-out prompts, rendered exactly as the model sees them."""
    return [render_prompt(ex, tokenizer) for ex in examples[:n] if "prompt" in ex]


def write_samples(
    path: Path, examples: list[Example], prompts: list[str], before: list[str], after: list[str]
) -> None:
    """samples.md: prompt, reference, and the model's answer before and after training."""
    parts = [
        "# Samples: before and after fine-tuning\n",
        "Greedy generations for held-out prompts.\n",
    ]
    for i, (prompt, b, a) in enumerate(zip(prompts, before, after, strict=True), start=1):
        parts += [
            f"## Sample {i}\n",
            "**Prompt**\n",
            fence(prompt),
            "**Reference**\n",
            fence(answer_text(examples[i - 1])),
            "**Before**\n",
            fence(b),
            "**After**\n",
            fence(a),
        ]
    path.write_text("\n".join(parts))


def fence(text: str) -> str:
    """A Markdown code fence that the text itself cannot close."""
    ticks = "````" if "```" in text else "```"
    return f"{ticks}\n{text.rstrip()}\n{ticks}\n"
