"""Runs generations for the server: a bounded queue in front of a pool of loaded models.

Backends are not thread-safe, so each generation holds one slot from start to end: a model copy
of its own, or on llama.cpp a lane of the one model that decodes every running request together
(`batching.BatchedModel`, the same object in every slot). `max_concurrency` slots run at once,
`max_queue` requests may wait, and the rest are turned away (Busy, a 429). A generation runs in
a worker thread and hands its text pieces to the event loop; when the client goes away or the
deadline passes, the worker stops at the next token and the slot is freed only once the model
is idle again.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

from honed.runtime.base import Backend, GenerationParams, Usage


class Busy(Exception):
    """Every slot is taken and the queue is full."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__("busy")
        self.retry_after_s = retry_after_s


class Timeout(Exception):
    """The request ran past its deadline."""


@dataclass
class Generation:
    """One request's generation: its prompt, sampling, deadline and (when done) usage."""

    prompt: str
    params: GenerationParams
    deadline: float
    usage: Usage = field(default_factory=Usage)
    started: float = field(default_factory=time.perf_counter)  # when the request came
    began: float | None = None  # when the model started on it

    @property
    def queued_s(self) -> float:
        """Seconds spent waiting for a model."""
        return (self.began or self.started) - self.started


class Ticket:
    """An admitted request; `release` gives back its queue place if it never ran."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.state = "waiting"  # then "running", then "done"

    def release(self) -> None:
        """Leave the queue (a request that ended before it got a model); idempotent."""
        if self.state == "waiting":
            self.engine.waiting -= 1
        self.state = "done"


class Engine:
    """The loaded model copies and the admission rules in front of them.

    All bookkeeping happens on the event loop's thread; only generation runs elsewhere.
    """

    def __init__(self, backends: list[Backend], max_queue: int) -> None:
        self.backends = backends
        self.max_queue = max_queue
        self.running = 0
        self.waiting = 0
        self._free = list(backends)
        self._slots: asyncio.Semaphore | None = None
        self._recent_s = 5.0  # a running estimate of one generation's length, for Retry-After

    @property
    def model(self) -> Backend:
        """The first copy: for tokenizing, chat templates and model facts."""
        return self.backends[0]

    def admit(self) -> Ticket:
        """A place in the queue; Busy (429) when every slot and queue place is taken."""
        if self.running + self.waiting >= len(self.backends) + self.max_queue:
            waits = 1 + self.waiting / len(self.backends)
            raise Busy(max(1, round(self._recent_s * waits)))
        self.waiting += 1
        return Ticket(self)

    @asynccontextmanager
    async def slot(self, ticket: Ticket) -> AsyncIterator[Backend]:
        """Wait for a free model copy with an admitted ticket; free it again at the end."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(len(self.backends))
        await self._slots.acquire()
        ticket.state = "running"
        self.waiting -= 1
        self.running += 1
        backend = self._free.pop()
        started = time.perf_counter()
        try:
            yield backend
        finally:
            self._free.append(backend)
            self.running -= 1
            ticket.state = "done"
            self._slots.release()
            self._recent_s = 0.8 * self._recent_s + 0.2 * (time.perf_counter() - started)

    async def pieces(self, backend: Backend, job: Generation) -> AsyncIterator[str]:
        """The completion's text pieces as the model makes them; job.usage is set at the end.

        Raises Timeout past job.deadline. Closing this iterator early (a client that went
        away) stops the model at its next token.
        """
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
        cancel = threading.Event()

        def post(kind: str, value: object) -> None:
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, (kind, value))
            except RuntimeError:  # the event loop is gone (server shutting down)
                cancel.set()

        worker = threading.Thread(
            target=_generate, args=(backend, job, cancel, post), daemon=True, name="honed-gen"
        )
        job.began = time.perf_counter()
        worker.start()
        try:
            while True:
                remaining = job.deadline - time.monotonic()
                if remaining <= 0:
                    raise Timeout
                try:
                    kind, value = await asyncio.wait_for(inbox.get(), remaining)
                except asyncio.TimeoutError:
                    raise Timeout from None
                if kind == "end":
                    return
                if kind == "error":
                    raise value  # type: ignore[misc]
                yield value  # type: ignore[misc]
        finally:
            cancel.set()
            with anyio.CancelScope(shield=True):  # the slot stays taken until the model is idle
                await anyio.to_thread.run_sync(worker.join)


def _generate(backend: Backend, job: Generation, cancel: threading.Event, post) -> None:
    """Worker thread: stream the completion into post() until done or cancelled."""
    stream: Iterator[str] = backend.stream(job.prompt, job.params, job.usage)
    try:
        for piece in stream:
            if cancel.is_set():
                break
            post("piece", piece)
    except BaseException as exc:  # handed to the event loop, which raises it in the request
        post("error", exc)
    finally:
        stream.close()  # type: ignore[attr-defined]
        post("end", None)
