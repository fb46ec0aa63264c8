"""Data for the stages: read a spec, split it, and format rows into training examples."""

from __future__ import annotations

import random
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from honed.data.format import (
    Example,
    PromptFormat,
    choose_format,
    detect_fields,
    make_examples,
)
from honed.data.sources import BadRows, Row, Splits, load_splits
from honed.errors import HonedError


@dataclass
class PreparedData:
    """Formatted train and validation examples, and what was skipped on the way."""

    train: list[Example]
    validation: list[Example]
    fmt: PromptFormat
    skipped: int
    first_skipped: str | None


def _fields(
    sample: Row, fmt: PromptFormat, prompt_field: str | None, completion_field: str | None
) -> tuple[str, str]:
    """Which fields are prompt and answer; ("text", "text") means raw next-token training."""
    if fmt.kind == "template" and fmt.answer_field != "completion":
        return ("", fmt.answer_field)  # a custom template names its own fields
    try:
        return detect_fields(sample, prompt_field, completion_field)
    except HonedError:
        if "text" in sample and not (prompt_field or completion_field):
            return ("text", "text")
        raise


def _validation_rows(
    splits: Splits, eval_data: str | None, val_fraction: float, seed: int, bad: BadRows, key: str
) -> tuple[list[Row], list[Row]]:
    """Train and validation rows: the data's own validation split where it has one, else a
    seeded `val_fraction` carved from train. Rows that share a prompt (`key`) go to the same
    side, so that validation never scores a prompt the model trained on (several answers to
    one prompt: the teacher's candidates, or `--targets both`)."""
    train = list(splits.get("train", []))
    if eval_data:
        return train, load_splits(eval_data, bad).get("train", [])
    if splits.get("validation"):
        return train, splits["validation"]
    groups: dict[object, list[Row]] = {}
    for i, row in enumerate(train):
        prompt = row.get(key) if key else None
        groups.setdefault(prompt if isinstance(prompt, str) else i, []).append(row)
    order = list(groups.values())
    random.Random(seed).shuffle(order)
    n_val, val = int(len(train) * val_fraction), []
    while order and len(val) < n_val:
        val.extend(order.pop(0))
    return [row for group in order for row in group], val


def prepare_data(
    spec: str,
    tokenizer: PreTrainedTokenizerBase,
    *,
    is_seq2seq: bool,
    template: str = "auto",
    system_prompt: str | None = None,
    prompt_field: str | None = None,
    completion_field: str | None = None,
    eval_data: str | None = None,
    val_fraction: float = 0.05,
    max_samples: int | None = None,
    skip_bad_rows: bool = False,
    seed: int = 42,
) -> PreparedData:
    """Load `spec`, split it and format every row; empty results are one-line errors."""
    bad = BadRows(skip_bad_rows)
    splits = load_splits(spec, bad)
    if not splits.get("train"):
        raise HonedError(f"data '{spec}' has no training rows: check the file or the split")
    fmt = choose_format(template, tokenizer, is_seq2seq, system_prompt)
    fields = _fields(splits["train"][0], fmt, prompt_field, completion_field)
    train_rows, val_rows = _validation_rows(splits, eval_data, val_fraction, seed, bad, fields[0])
    if not train_rows:
        raise HonedError(f"data '{spec}': validation took every training row: lower val_fraction")
    if max_samples:
        train_rows = random.Random(seed).sample(train_rows, min(max_samples, len(train_rows)))
    train = make_examples(train_rows, fmt, fields, bad)
    validation = make_examples(val_rows, fmt, fields, bad)
    if not train:
        raise HonedError(f"data '{spec}': every row was malformed ({bad.first}): fix the data")
    return PreparedData(train, validation, fmt, bad.count, bad.first)
