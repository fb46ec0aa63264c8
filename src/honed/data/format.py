"""Prompt formats: turn raw rows into prompt/completion examples (or raw text) for training.

A format is the model's chat template, a named template (task, qa, plain) or a custom string
whose last placeholder is the answer, e.g. `Task: {text}\\nSolution:\\n{code}`. Generation
(samples, evaluation) renders prompts the same way, so training and use agree.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from honed.data.sources import BadRows, Row
from honed.errors import HonedError

TEMPLATES = {
    "task": "Task: {prompt}\nSolution:\n{completion}",
    "qa": "Question: {prompt}\nAnswer: {completion}",
    "plain": "{prompt}\n{completion}",
}
FIELD_PAIRS = [
    ("prompt", "completion"), ("input", "output"), ("instruction", "output"),
    ("question", "answer"), ("text", "code"), ("source", "target"), ("input", "reference"),
]  # fmt: skip
Example = dict[str, Any]


@dataclass(frozen=True)
class PromptFormat:
    """How rows become model input: `chat` messages or a `template` string."""

    kind: str
    prefix: str = ""
    answer_field: str = "completion"
    system: str | None = None


def _placeholders(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def parse_template(template: str) -> PromptFormat:
    """Split a template into the prompt prefix and the field that is the answer."""
    fields = _placeholders(template)
    last = "{" + fields[-1] + "}" if fields else ""
    if not fields or not template.endswith(last):
        raise HonedError(
            f"template {template!r} must end with the answer field, "
            "e.g. 'Q: {text}\\nA: {code}'"
        )
    return PromptFormat("template", template[: -len(last)], fields[-1])


def choose_format(
    template: str, tokenizer: PreTrainedTokenizerBase, is_seq2seq: bool, system: str | None
) -> PromptFormat:
    """Pick the format: `auto` is the chat template when the (causal) model has one."""
    has_chat = bool(getattr(tokenizer, "chat_template", None)) and not is_seq2seq
    if template == "chat" and not has_chat:
        raise HonedError("template 'chat' needs a model with a chat template: use --template task")
    if template == "chat" or (template == "auto" and has_chat):
        return PromptFormat("chat", system=system)
    if template == "auto":
        template = "plain" if is_seq2seq else "task"
    return parse_template(TEMPLATES.get(template, template))


def detect_fields(
    row: Row, prompt_field: str | None, completion_field: str | None
) -> tuple[str, str]:
    """The prompt and answer field names: as given, or the first known pair the row has."""
    if prompt_field and completion_field:
        return prompt_field, completion_field
    for p, c in FIELD_PAIRS:
        if (prompt_field or p) in row and (completion_field or c) in row:
            return prompt_field or p, completion_field or c
    fields = ", ".join(k for k in row if k != "_where")
    raise HonedError(
        f"{row.get('_where', 'data')}: cannot tell prompt from answer (fields: {fields}): "
        "pass --prompt-field and --completion-field or a --template"
    )


def _text(row: Row, field: str) -> str:
    value = row.get(field)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"field '{field}' is missing or not a non-empty string")
    return value


def make_example(row: Row, fmt: PromptFormat, fields: tuple[str, str]) -> Example:
    """One training example from a row (raises ValueError for a malformed row)."""
    if fields == ("text", "text"):
        return {"text": _text(row, "text")}
    if fmt.kind == "template" and fmt.answer_field != "completion":
        values = {k: v for k, v in row.items() if k != "_where"}
        try:
            prompt = fmt.prefix.format(**values)
        except KeyError as exc:
            raise ValueError(f"template field {exc} is not in the row") from exc
        return {"prompt": prompt, "completion": _text(row, fmt.answer_field)}
    prompt, answer = _text(row, fields[0]), _text(row, fields[1])
    if fmt.kind == "template":
        return {"prompt": fmt.prefix.format(prompt=prompt), "completion": answer}
    messages = [{"role": "system", "content": fmt.system}] if fmt.system else []
    return {
        "prompt": [*messages, {"role": "user", "content": prompt}],
        "completion": [{"role": "assistant", "content": answer}],
    }


def make_examples(
    rows: list[Row], fmt: PromptFormat, fields: tuple[str, str], bad: BadRows
) -> list[Example]:
    """Examples for all well-formed rows; malformed ones go through `bad`."""
    out = []
    for row in rows:
        try:
            out.append(make_example(row, fmt, fields))
        except ValueError as exc:
            bad.report(str(row.get("_where", "data")), str(exc))
    return out


def render_prompt(example: Example, tokenizer: PreTrainedTokenizerBase) -> str:
    """The exact text a model sees before its answer (for generation)."""
    prompt = example["prompt"]
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)


def answer_text(example: Example) -> str:
    """The reference answer of an example as plain text."""
    completion = example.get("completion", example.get("text", ""))
    return completion if isinstance(completion, str) else completion[-1]["content"]
