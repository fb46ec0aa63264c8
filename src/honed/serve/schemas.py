"""Request bodies of the OpenAI-compatible routes, validated by pydantic (and so by FastAPI).

Fields honed does not use are accepted and ignored, as OpenAI-compatible servers do, so
clients that send them still work.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Stop = str | Annotated[list[str], Field(max_length=4)] | None


class StreamOptions(BaseModel):
    """OpenAI's stream_options: include_usage adds a last chunk holding only the usage."""

    include_usage: bool = False


class Sampling(BaseModel):
    """What both routes share: the model name and how to sample."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="The served model name (see /v1/models).")
    max_tokens: int | None = Field(None, ge=1, description="New tokens at most.")
    temperature: float = Field(1.0, ge=0, le=2, description="0 is greedy.")
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    stop: Stop = Field(None, description="Up to 4 strings that end the completion.")
    n: int = Field(
        1, ge=1, le=128, description="Choices per prompt (seeded: choice i uses seed + i)."
    )
    stream: bool = False
    stream_options: StreamOptions | None = None

    def stop_strings(self) -> tuple[str, ...]:
        """Stop as a tuple of strings."""
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class CompletionRequest(Sampling):
    """POST /v1/completions."""

    prompt: str | Annotated[list[str], Field(min_length=1)] = Field(
        description="A prompt, or a list of prompts (one choice each)."
    )
    max_tokens: int | None = Field(16, ge=1, description="New tokens at most (OpenAI: 16).")

    def prompts(self) -> list[str]:
        """The prompts as a list."""
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class TextPart(BaseModel):
    """One part of a message's content in OpenAI's list form (text only)."""

    type: Literal["text"]
    text: str


class Message(BaseModel):
    """One chat message (text content)."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        """The content as one string."""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatRequest(Sampling):
    """POST /v1/chat/completions."""

    messages: Annotated[list[Message], Field(min_length=1)]
    max_completion_tokens: int | None = Field(None, ge=1, description="Newer name of max_tokens.")

    def token_cap(self) -> int | None:
        """max_completion_tokens, else max_tokens."""
        return self.max_completion_tokens or self.max_tokens

    def as_dicts(self) -> list[dict[str, str]]:
        """Messages for the chat template (developer is the newer name of system)."""
        return [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            for m in self.messages
        ]
