"""The OpenAI-compatible HTTP API: /v1/models, /v1/completions, /v1/chat/completions,
/health and /metrics, over any Backend (see engine.py for how generations are scheduled).

Every error is OpenAI's error object with a 4xx status that says what to fix (bad JSON or
types 400, no key 401, unknown model 404, over the context 400, busy 429 with Retry-After);
a generation that runs past the request timeout is a 504.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from honed import __version__
from honed.config import ServeConfig
from honed.errors import HonedError
from honed.runtime.base import GenerationParams
from honed.serve.engine import Busy, Engine, Generation, Ticket, Timeout
from honed.serve.guard import Guard
from honed.serve.metrics import CONTENT_TYPE, Metrics
from honed.serve.responses import (
    ChunkWriter,
    chat_choice,
    completion_choice,
    envelope,
    error_response,
    new_id,
    usage_body,
)
from honed.serve.schemas import ChatRequest, CompletionRequest, Sampling

log = logging.getLogger(__name__)
router = APIRouter()
DISCONNECT_POLL_S = 0.25


class ApiError(Exception):
    """A request honed refuses, with the status and OpenAI error fields to answer with."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


class Server:
    """What the routes share: the engine, limits, served name and metrics."""

    def __init__(self, engine: Engine, cfg: ServeConfig, name: str) -> None:
        self.engine = engine
        self.cfg = cfg
        self.name = name
        self.created = int(time.time())
        self.metrics = Metrics(lambda: (engine.running, engine.waiting))

    def check_model(self, model: str) -> None:
        """404 unless the request names the served model."""
        if model not in (self.name, self.cfg.model):
            raise ApiError(
                404,
                f"model '{model}' is not served here: use '{self.name}' (GET /v1/models lists it)",
                param="model",
                code="model_not_found",
            )

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """The conversation through the model's chat template; 400 when it has none."""
        model = self.engine.model
        if not model.has_chat_template:
            raise ApiError(
                400,
                f"model '{self.name}' has no chat template: "
                "use /v1/completions with a plain prompt",
                param="messages",
            )
        try:
            return model.chat_prompt(messages)
        except Exception as exc:  # a template may refuse a conversation (roles, order)
            raise ApiError(
                400, f"the chat template refused these messages: {exc}", param="messages"
            ) from exc

    def jobs(self, prompts: list[str], body: Sampling, max_tokens: int | None) -> list[Generation]:
        """`n` generations per prompt, prompt by prompt; choice i of a seeded request samples
        with seed + i, so the choices differ and each can be asked for again alone."""
        if len(prompts) * body.n > self.cfg.max_prompts:
            raise ApiError(
                400,
                f"{len(prompts)} prompt(s) x n={body.n} choices in one request; this server "
                f"makes at most {self.cfg.max_prompts} (--max-prompts): send fewer",
                param="n" if body.n > 1 else "prompt",
            )
        out = []
        for prompt in prompts:
            first = self.job(prompt, body, max_tokens)
            out += [first, *(reseeded(first, i) for i in range(1, body.n))]
        return out

    def job(self, prompt: str, body: Sampling, max_tokens: int | None) -> Generation:
        """A generation for prompt, with max_tokens checked against the limits and context."""
        model, limit = self.engine.model, self.cfg.max_tokens_limit
        tokenize = getattr(model, "tokenize", None)
        n = len(tokenize(prompt)) if tokenize else model.count_tokens(prompt)
        context = model.context_size
        if max_tokens is not None and max_tokens > limit:
            raise ApiError(
                400,
                f"max_tokens {max_tokens} is over this server's limit of {limit}",
                param="max_tokens",
            )
        wanted = max_tokens or min(limit, max(1, context - n))
        if n + wanted > context and not getattr(model, "is_seq2seq", False):
            raise ApiError(
                400,
                f"this model's context holds {context} tokens, but you asked "
                f"for {n + wanted} ({n} in the prompt, {wanted} for the completion): "
                "shorten the prompt or lower max_tokens",
                param="max_tokens",
                code="context_length_exceeded",
            )
        params = GenerationParams(
            max_new_tokens=wanted,
            temperature=body.temperature,
            top_p=body.top_p,
            seed=body.seed,
            stop=body.stop_strings(),
        )
        return Generation(prompt, params, deadline=time.monotonic() + self.cfg.request_timeout_s)

    async def respond(
        self, request: Request, jobs: list[Generation], chat: bool, n: int = 1
    ) -> Response:
        """Run the jobs (together where the model decodes streams in one batch, else one after
        another) and answer with the whole completions (n choices per prompt)."""
        route, ticket = request.url.path, self.engine.admit()
        try:
            async with self.engine.slot(ticket) as backend:
                texts = await self._texts(request, backend, jobs)
                if None in texts:
                    return Response(status_code=499)  # the client went away
        finally:
            ticket.release()
        self._observe(route, jobs)
        choice = chat_choice if chat else completion_choice
        choices = [choice(i, t, j.usage) for i, (t, j) in enumerate(zip(texts, jobs, strict=True))]
        kind = ("chatcmpl", "chat.completion") if chat else ("cmpl", "text_completion")
        usage = usage_body([j.usage for j in jobs], per_prompt=n)
        return JSONResponse(
            envelope(new_id(kind[0]), kind[1], self.name, choices=choices, usage=usage)
        )

    def stream(self, request: Request, job: Generation, chat: bool, with_usage: bool) -> Response:
        """Answer with server-sent events as the model writes."""
        ticket, writer = self.engine.admit(), ChunkWriter(chat, self.name)

        async def events() -> AsyncIterator[str]:
            async with self.engine.slot(ticket) as backend:
                yield writer.first()
                try:
                    async for piece in self.engine.pieces(backend, job):
                        yield writer.piece(piece)
                except Timeout:
                    self.metrics.errors.labels(request.url.path, "timeout").inc()
                    yield writer.error(504, timeout_message(self.cfg), "timeout")
                    return
                except HonedError as exc:
                    yield writer.error(400, str(exc), "invalid_request_error")
                    return
                self._observe(request.url.path, [job])
                yield writer.last(job.usage, with_usage)

        return TicketStream(
            ticket,
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _texts(
        self, request: Request, backend: Any, jobs: list[Generation]
    ) -> list[str | None]:
        """Each job's text; None for the jobs stopped because the client went away."""
        if getattr(backend, "concurrent_streams", False):
            pending = (self._collect(request, self.engine.pieces(backend, j), j) for j in jobs)
            return list(await asyncio.gather(*pending))
        texts: list[str | None] = []
        for job in jobs:
            texts.append(await self._collect(request, self.engine.pieces(backend, job), job))
            if texts[-1] is None:
                break
        return texts

    async def _collect(
        self, request: Request, pieces: AsyncIterator[str], job: Generation
    ) -> str | None:
        """All of a completion's text; None when the client disconnected (generation stops)."""
        text, polled = [], time.monotonic()
        async for piece in pieces:
            text.append(piece)
            if time.monotonic() - polled > DISCONNECT_POLL_S:
                polled = time.monotonic()
                if await request.is_disconnected():
                    await pieces.aclose()  # type: ignore[attr-defined]
                    return None
        return "".join(text)

    def _observe(self, route: str, jobs: list[Generation]) -> None:
        m = self.metrics
        for job in jobs:
            m.prompt_tokens.inc(job.usage.prompt_tokens)
            m.completion_tokens.inc(job.usage.completion_tokens)
            if job.usage.ttft_s is not None:
                m.ttft.labels(route).observe(job.queued_s + job.usage.ttft_s)
        m.latency.labels(route).observe(time.perf_counter() - jobs[0].started)


class TicketStream(StreamingResponse):
    """A streaming response that gives back its queue place however the stream ends."""

    def __init__(self, ticket: Ticket, content: AsyncIterator[str], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.ticket = ticket

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.ticket.release()


def timeout_message(cfg: ServeConfig) -> str:
    """What a request past its deadline is told."""
    return (
        f"the request took longer than {cfg.request_timeout_s:g} s: ask for fewer "
        "max_tokens, or start the server with a larger --request-timeout-s"
    )


def server_of(request: Request) -> Server:
    """The Server this app was made with."""
    return request.app.state.server


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    """Liveness: 200 while the server runs (no API key needed)."""
    srv = server_of(request)
    return {
        "status": "ok",
        "model": srv.name,
        "backend": srv.engine.model.name,
        "running": srv.engine.running,
        "waiting": srv.engine.waiting,
    }


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text: requests, errors, latency and TTFT histograms, tokens."""
    return Response(server_of(request).metrics.render(), media_type=CONTENT_TYPE)


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    """The one served model, as OpenAI lists models."""
    return {"object": "list", "data": [model_card(server_of(request))]}


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    """The served model if model_id names it, else 404."""
    srv = server_of(request)
    srv.check_model(model_id)
    return model_card(srv)


def model_card(srv: Server) -> dict[str, Any]:
    """OpenAI's model object."""
    return {"id": srv.name, "object": "model", "created": srv.created, "owned_by": "honed"}


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request) -> Response:
    """Complete a prompt (or a list of prompts, one choice each)."""
    srv = server_of(request)
    srv.check_model(body.model)
    prompts = body.prompts()
    if body.stream and len(prompts) > 1:
        raise ApiError(400, "stream one prompt per request", param="prompt")
    check_stream(body)
    jobs = srv.jobs(prompts, body, body.max_tokens)
    if body.stream:
        return srv.stream(request, jobs[0], chat=False, with_usage=include_usage(body))
    return await srv.respond(request, jobs, chat=False, n=body.n)


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatRequest, request: Request) -> Response:
    """Answer a conversation through the model's chat template."""
    srv = server_of(request)
    srv.check_model(body.model)
    check_stream(body)
    jobs = srv.jobs([srv.chat_prompt(body.as_dicts())], body, body.token_cap())
    if body.stream:
        return srv.stream(request, jobs[0], chat=True, with_usage=include_usage(body))
    return await srv.respond(request, jobs, chat=True, n=body.n)


def check_stream(body: Sampling) -> None:
    """A stream carries one choice."""
    if body.stream and body.n > 1:
        raise ApiError(400, "stream one choice per request (n=1), or leave stream off", param="n")


def reseeded(job: Generation, choice: int) -> Generation:
    """Another choice of the same generation: seed + choice (mod 2**32) when seeded."""
    seed = job.params.seed
    params = job.params if seed is None else replace(job.params, seed=(seed + choice) % 2**32)
    return Generation(job.prompt, params, deadline=job.deadline)


def include_usage(body: Sampling) -> bool:
    """stream_options.include_usage, off when not given."""
    return bool(body.stream_options and body.stream_options.include_usage)


def create_app(engine: Engine, cfg: ServeConfig, name: str) -> FastAPI:
    """The FastAPI app serving engine's model under name, with cfg's limits and key."""
    app = FastAPI(title="honed", version=__version__, summary="OpenAI-compatible API")
    srv = Server(engine, cfg, name)
    app.state.server = srv
    app.include_router(router)
    add_error_handlers(app, srv)

    def count(route: str, status: int) -> None:
        srv.metrics.requests.labels(route, str(status)).inc()
        if status >= 400:
            srv.metrics.errors.labels(route, str(status)).inc()

    app.add_middleware(Guard, api_key=cfg.api_key, max_body=cfg.max_body_bytes, count=count)
    return app


def add_error_handlers(app: FastAPI, srv: Server) -> None:
    """Every failure becomes OpenAI's error object with a status that says whose fault it is."""

    @app.exception_handler(RequestValidationError)
    async def bad_body(request: Request, exc: RequestValidationError) -> Response:
        message, param = describe_validation(exc)
        return error_response(400, message, param=param)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}: see /docs for the API"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(ApiError)
    async def refused(request: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, param=exc.param, code=exc.code)

    @app.exception_handler(Busy)
    async def busy(request: Request, exc: Busy) -> Response:
        return error_response(
            429,
            f"the server is busy ({srv.engine.running} running, {srv.engine.waiting} "
            f"waiting): retry in {exc.retry_after_s} s",
            "rate_limit_error",
            headers={"Retry-After": str(exc.retry_after_s)},
        )

    @app.exception_handler(Timeout)
    async def timed_out(request: Request, exc: Timeout) -> Response:
        return error_response(504, timeout_message(srv.cfg), "timeout")

    @app.exception_handler(HonedError)
    async def honed_error(request: Request, exc: HonedError) -> Response:
        return error_response(400, str(exc))


TYPE_TAG = re.compile(r"^(str|int|float|bool|none|\w+\[.*\]|function-.*)$")


def describe_validation(exc: RequestValidationError) -> tuple[str, str | None]:
    """One line for pydantic's complaint, and the parameter it is about."""
    errors = exc.errors()
    first = errors[0]
    if first.get("type") == "json_invalid":
        return f"request body is not valid JSON ({first.get('msg')}): send a JSON object", None
    param = error_param(first)
    if param is None:
        return "the request body must be a JSON object (Content-Type: application/json)", None
    # a union (str or list of str) complains once per member: say them all
    said = dict.fromkeys(e.get("msg", "") for e in errors if error_param(e) == param)
    return f"bad value for '{param}': {' or '.join(said)}", param


def error_param(error: dict[str, Any]) -> str | None:
    """The dotted parameter name of a pydantic error, without union member tags."""
    loc = [str(p) for p in error.get("loc", ()) if p != "body" and not TYPE_TAG.match(str(p))]
    return ".".join(loc) or None
