"""Backend methods that only need a Hugging Face tokenizer (transformers and ONNX Runtime).

A class using this mixin sets `tokenizer`, `model_ref` and `_eos` (the set of token ids that
end a generation).
"""

from __future__ import annotations

from typing import Any

from honed.errors import HonedError


def context_size_of(config: Any) -> int:
    """Longest sequence the model takes, from its config (512 for T5-style models)."""
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return 512 if getattr(config, "is_encoder_decoder", False) else 2048


class TokenizerMethods:
    """chat_prompt, count_tokens, tokenize and model_facts from a tokenizer."""

    tokenizer: Any
    model_ref: str
    _eos: set[int]

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        if not self.has_chat_template:
            raise HonedError(
                f"model '{self.model_ref}' has no chat template: use plain prompts with it"
            )
        return self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )

    def count_tokens(self, text: str) -> int:
        """Tokens of the text itself, without special tokens the tokenizer may add."""
        return len(self.text_ids(text))

    def text_ids(self, text: str) -> list[int]:
        """The ids of the text itself, without special tokens the tokenizer may add."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def decode_ids(self, ids: list[int]) -> str:
        """Text of generated ids, special tokens left out (as completions are decoded)."""
        return self.tokenizer.decode(
            ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )

    def tokenize(self, text: str) -> list[int]:
        """The token ids a prompt is fed to the model as (special tokens it adds included)."""
        return self._encode(text)

    def model_facts(self) -> dict[str, Any]:
        """Chat template, EOS and stop tokens: what an export must keep."""
        return {
            "chat_template": getattr(self.tokenizer, "chat_template", None),
            "eos_token_id": self.tokenizer.eos_token_id,
            "stop_token_ids": sorted(self._eos),
        }

    def _encode(self, prompt: str) -> list[int]:
        bos = self.tokenizer.bos_token
        add_special = not (bos and prompt.startswith(bos))  # a chat template may add BOS itself
        ids = self.tokenizer(prompt, add_special_tokens=add_special)["input_ids"]
        if not ids:
            raise HonedError("cannot generate from an empty prompt: give the model some text")
        return ids
