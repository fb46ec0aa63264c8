"""`honed chat`: talk to any model in the terminal, with streaming and timing of every reply.

Chat models keep the conversation and use their chat template; models without one
(text-to-text models such as query rewriters, or base models) answer each line on its own.
After each reply a line gives its latency, time to first token and decode tokens/s.
Commands: /reset, /system TEXT, /set NAME VALUE (temperature, top_p, max_tokens, seed),
/show, /help, /quit.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TextIO

from honed.config import ChatConfig
from honed.errors import HonedError
from honed.runtime.base import Backend, GenerationParams, Usage

HELP = """commands:
  /reset              forget the conversation (the system message stays)
  /system TEXT        set the system message (empty: none) and forget the conversation
  /set NAME VALUE     temperature, top_p, max_tokens or seed (seed none: random)
  /show               the current settings
  /quit               leave (Ctrl-D too); Ctrl-C stops a reply"""
SETTINGS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "max_tokens": "max_new_tokens",
    "max_new_tokens": "max_new_tokens",
    "seed": "seed",
}


@dataclass
class Reply:
    """One reply's text and timing."""

    text: str
    usage: Usage
    seconds: float
    stopped: bool = False

    def timing(self) -> str:
        """The line printed under the reply."""
        u, ttft = self.usage, self.usage.ttft_s or self.seconds
        decode = self.seconds - ttft
        rate = (u.completion_tokens - 1) / decode if decode > 0 and u.completion_tokens > 1 else 0
        note = ", stopped" if self.stopped else ""
        return (
            f"[{self.seconds:.2f} s, first token {ttft:.2f} s, {rate:.1f} tok/s, "
            f"{u.completion_tokens} tokens{note}]"
        )


@dataclass
class Session:
    """The conversation and settings of one chat."""

    model: Backend
    params: GenerationParams
    system: str | None = None
    history: list[dict[str, str]] = field(default_factory=list)

    @property
    def multi_turn(self) -> bool:
        """True for chat models (history and chat template), False for single-turn."""
        return self.model.has_chat_template and not getattr(self.model, "is_seq2seq", False)

    def prompt(self, text: str) -> str:
        """The model input for a new user line, oldest turns dropped to fit the context."""
        if not self.multi_turn:
            return text
        turns = [*self.history, {"role": "user", "content": text}]
        while True:
            prompt = self.model.chat_prompt(self._with_system(turns))
            room = self.model.context_size - self.model.count_tokens(prompt)
            if room >= min(self.params.max_new_tokens, 64) or len(turns) <= 1:
                return prompt
            turns = turns[2:]  # forget the oldest exchange
            self.history = turns[:-1]

    def _with_system(self, turns: list[dict[str, str]]) -> list[dict[str, str]]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + turns

    def answer(self, text: str, write: Callable[[str], None]) -> Reply:
        """Stream the reply to write; Ctrl-C stops it (what came so far is kept)."""
        usage, pieces, started = Usage(), [], time.perf_counter()
        stream = self.model.stream(self.prompt(text), self._params(), usage)
        stopped = False
        try:
            for piece in stream:
                pieces.append(piece)
                write(piece)
        except KeyboardInterrupt:
            stopped = True
        finally:
            stream.close()  # type: ignore[attr-defined]
        reply = Reply("".join(pieces), usage, time.perf_counter() - started, stopped)
        if self.multi_turn:
            self.history += [
                {"role": "user", "content": text},
                {"role": "assistant", "content": reply.text},
            ]
        return reply

    def _params(self) -> GenerationParams:
        room = self.model.context_size
        return replace(self.params, max_new_tokens=min(self.params.max_new_tokens, room))

    def command(self, line: str) -> str | None:
        """Carry out a /command; the text to show, or None to quit."""
        name, _, arg = line[1:].partition(" ")
        arg = arg.strip()
        if name in ("quit", "exit", "q"):
            return None
        if name == "reset":
            self.history = []
            return "(conversation cleared)"
        if name == "system":
            self.system, self.history = arg or None, []
            return f"(system message {'set' if arg else 'removed'}; conversation cleared)"
        if name == "set":
            return self._set(arg)
        if name == "show":
            return self.show()
        return HELP if name == "help" else f"unknown command /{name}\n{HELP}"

    def _set(self, arg: str) -> str:
        key, _, value = arg.partition(" ")
        field_name = SETTINGS.get(key)
        if field_name is None or not value.strip():
            return f"usage: /set NAME VALUE, NAME one of {', '.join(SETTINGS)}"
        try:
            self.params = replace(self.params, **{field_name: parse_setting(key, value.strip())})
        except ValueError as exc:
            return f"bad value for {key}: {exc}"
        return self.show()

    def show(self) -> str:
        """The settings as one line."""
        p = self.params
        mode = "multi-turn" if self.multi_turn else "single-turn"
        return (
            f"({mode}; temperature {p.temperature}, top_p {p.top_p}, max_tokens "
            f"{p.max_new_tokens}, seed {p.seed}; system: {self.system or 'none'})"
        )


def parse_setting(key: str, value: str) -> float | int | None:
    """A /set value checked like the config checks it."""
    if key == "seed":
        return None if value.lower() in ("none", "random") else int(value)
    if key in ("max_tokens", "max_new_tokens"):
        number = int(value)
        if number < 1:
            raise ValueError("must be at least 1")
        return number
    number = float(value)
    low, high = (0.0, 2.0) if key == "temperature" else (1e-6, 1.0)
    if not low <= number <= high:
        raise ValueError(f"must be between {low:g} and {high:g}")
    return number


def run_chat(
    model: Backend, cfg: ChatConfig, read: Callable[[str], str] = input, out: TextIO = sys.stdout
) -> None:
    """The read-reply loop until /quit or end of input."""
    params = GenerationParams(
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        seed=cfg.seed,
    )
    session = Session(model, params, system=cfg.system)

    def write(text: str) -> None:
        out.write(text)
        out.flush()

    write(
        f"honed chat with {model.model_ref} ({model.name}) {session.show()}\n/help lists "
        "the commands.\n"
    )
    while True:
        try:
            line = read("> ").strip()
        except (EOFError, KeyboardInterrupt):
            write("\n")
            return
        if not line:
            continue
        if line.startswith("/"):
            shown = session.command(line)
            if shown is None:
                return
            write(shown + "\n")
            continue
        try:
            reply = session.answer(line, write)
        except HonedError as exc:
            write(f"\nhoned: {exc}\n")
            continue
        write("\n" + reply.timing() + "\n")


def chat(cfg: ChatConfig) -> None:
    """Load cfg.model and chat with it on this terminal."""
    from honed.runtime.configured import load_configured

    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (line editing and history for input())
    model = load_configured(cfg)
    try:
        run_chat(model, cfg)
    finally:
        model.close()
