"""The JSON bodies of OpenAI's API: completions, chat completions, stream chunks, errors."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from fastapi.responses import JSONResponse

from honed.runtime.base import Usage


def new_id(prefix: str) -> str:
    """An id like OpenAI's: cmpl-..., chatcmpl-..."""
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage_body(usages: list[Usage], per_prompt: int = 1) -> dict[str, int]:
    """Token usage summed over the choices (`per_prompt` choices of each prompt in a row: its
    prompt counts once, as OpenAI counts it)."""
    prompt = sum(u.prompt_tokens for u in usages[::per_prompt])
    completion = sum(u.completion_tokens for u in usages)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def completion_choice(index: int, text: str, usage: Usage) -> dict[str, Any]:
    """One choice of /v1/completions."""
    return {"index": index, "text": text, "logprobs": None, "finish_reason": usage.finish_reason}


def chat_choice(index: int, text: str, usage: Usage) -> dict[str, Any]:
    """One choice of /v1/chat/completions."""
    return {
        "index": index,
        "message": {"role": "assistant", "content": text},
        "logprobs": None,
        "finish_reason": usage.finish_reason,
    }


def envelope(rid: str, obj: str, model: str, **rest: Any) -> dict[str, Any]:
    """The fields every response and chunk starts with."""
    return {"id": rid, "object": obj, "created": int(time.time()), "model": model, **rest}


class ChunkWriter:
    """Server-sent events of one streamed completion, shaped for its route."""

    def __init__(self, chat: bool, model: str) -> None:
        self.chat = chat
        self.model = model
        self.id = new_id("chatcmpl" if chat else "cmpl")
        self.object = "chat.completion.chunk" if chat else "text_completion"

    def first(self) -> str:
        """Chat streams open with the assistant role; completions send nothing first."""
        if not self.chat:
            return ""
        return self._event([self._choice({"role": "assistant", "content": ""}, None)])

    def piece(self, text: str) -> str:
        """A chunk carrying new text."""
        delta = {"content": text} if self.chat else text
        return self._event([self._choice(delta, None)])

    def last(self, usage: Usage, include_usage: bool) -> str:
        """The finishing chunk (with usage), the usage-only chunk if asked, then [DONE]."""
        body = usage_body([usage])
        done = self._event([self._choice({} if self.chat else "", usage.finish_reason)], body)
        extra = self._event([], body) if include_usage else ""
        return done + extra + "data: [DONE]\n\n"

    def error(self, status: int, message: str, kind: str) -> str:
        """An error after the stream began: an error event, then [DONE]."""
        return sse(error_body(message, kind, status=status)) + "data: [DONE]\n\n"

    def _choice(self, delta: Any, finish: str | None) -> dict[str, Any]:
        if self.chat:
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {"index": 0, "text": delta, "logprobs": None, "finish_reason": finish}

    def _event(self, choices: list[dict[str, Any]], usage: dict | None = None) -> str:
        return sse(envelope(self.id, self.object, self.model, choices=choices, usage=usage))


def sse(body: dict[str, Any]) -> str:
    """One server-sent event holding a JSON body."""
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def error_body(
    message: str, kind: str, *, param: str | None = None, code: str | None = None, status: int
) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code or status}}


def error_response(
    status: int,
    message: str,
    kind: str = "invalid_request_error",
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An OpenAI-style error response."""
    body = error_body(message, kind, param=param, code=code, status=status)
    return JSONResponse(body, status_code=status, headers=headers)
