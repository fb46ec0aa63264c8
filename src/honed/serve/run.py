"""`honed serve`: bind the port, load the model copies, and run the API with uvicorn."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from honed.config import ServeConfig
from honed.errors import HonedError
from honed.runtime.base import Backend
from honed.runtime.configured import load_configured
from honed.serve.engine import Engine

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def served_name(cfg: ServeConfig) -> str:
    """The name clients use: --served-name, else the model file or directory's name."""
    if cfg.served_name:
        return cfg.served_name
    name = Path(cfg.model.rstrip("/")).name or cfg.model
    return name.removesuffix(".gguf")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, so a taken port fails before minutes of model loading."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise HonedError(
            f"cannot listen on {host}:{port} ({exc.strerror}): pick another --port "
            "(0 takes any free one) or --host"
        ) from exc
    sock.listen(128)
    return sock


def load_copies(cfg: ServeConfig) -> list[Backend]:
    """One slot per concurrent generation. Where the model can batch (llama.cpp; causal
    transformers models with a full-attention cache, or sliding windows no narrower than the
    served context) and unless --no-batching, every slot is
    the same model, decoding all running requests together. Otherwise the generations run
    side by side, sharing the cores unless --threads is set: in one model that many threads
    may run at once (an ONNX Runtime session), else in a copy of the model each."""
    if cfg.max_concurrency > 1 and cfg.batching:
        backend = load_configured(cfg)
        if getattr(backend, "can_batch", False):
            return batched_slots(backend, cfg)
        why = getattr(backend, "batch_blocker", None) or "its runtime does not batch"
        log.info("%s cannot batch requests (%s): they run side by side", cfg.model, why)
        backend.close()
    if cfg.max_concurrency > 1 and cfg.threads is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        cfg = cfg.model_copy(update={"threads": max(1, cores // cfg.max_concurrency)})
    copies: list[Backend] = [load_configured(cfg)]
    if getattr(copies[0], "thread_safe", False):
        return copies * cfg.max_concurrency
    try:
        while len(copies) < cfg.max_concurrency:
            copies.append(load_configured(cfg))
    except BaseException:
        for backend in copies:
            backend.close()
        raise
    return copies


def batched_slots(backend: Backend, cfg: ServeConfig) -> list[Backend]:
    """The backend wrapped so that every slot's requests decode in one batch."""
    from honed.serve.batching import BatchedModel

    try:
        batched = BatchedModel(backend, cfg.max_concurrency, cfg.prefill_chunk or None)
    except BaseException:
        backend.close()
        raise
    warn_kv(batched)
    return [batched] * cfg.max_concurrency


def warn_kv(batched: Any) -> None:
    """Warn when the batch's KV cache can take over half the memory (llama.cpp allocates
    it up front; transformers grows it as the rows need)."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if batched.kv_bytes > memory / 2:
        log.warning(
            "the KV cache for %d requests x %d tokens can take %s of this machine's %s: "
            "lower --max-concurrency or --n-ctx",
            batched.width, batched.cells, gib(batched.kv_bytes), gib(memory),
        )  # fmt: skip


def gib(size: float) -> str:
    """A size in bytes as GiB, for messages."""
    return f"{size / 2**30:.2f} GiB"


def build(cfg: ServeConfig) -> tuple[object, str]:
    """The app for cfg (models loaded) and its served name."""
    from honed.serve.api import create_app

    if cfg.api_key is None and os.environ.get("HONED_API_KEY"):
        cfg = cfg.model_copy(update={"api_key": os.environ["HONED_API_KEY"]})
    if cfg.host not in LOOPBACK and not cfg.api_key:
        log.warning(
            "serving on %s without an API key: anyone who can reach it can use it "
            "(set --api-key or HONED_API_KEY)",
            cfg.host,
        )
    name = served_name(cfg)
    engine = Engine(load_copies(cfg), max_queue=cfg.max_queue)
    return create_app(engine, cfg, name), name


def serve(cfg: ServeConfig, announce=print) -> None:  # noqa: ANN001
    """Serve until interrupted."""
    import uvicorn

    sock = bind(cfg.host, cfg.port)
    try:
        app, name = build(cfg)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        announce(f"serving '{name}' at http://{shown}:{port}/v1{concurrency(app)} (Ctrl-C stops)")
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def concurrency(app: object) -> str:
    """How the app runs concurrent requests, for the start-up line ('' for one at a time)."""
    slots = app.state.server.engine.backends  # type: ignore[attr-defined]
    if len(slots) == 1:
        return ""
    if len({id(s) for s in slots}) > 1:
        return f", {len(slots)} requests at once (one model copy each)"
    batched = slots[0]
    if not hasattr(batched, "kv_bytes"):
        return f", {len(slots)} requests at once (side by side in one {batched.name} session)"
    return (
        f", {batched.width} requests at once (decoded together; KV cache up to "
        f"{gib(batched.kv_bytes)}: {batched.cells} tokens each)"
    )


@contextlib.contextmanager
def running(app: object, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve app from a background thread (tests, benchmarks); yields its base URL."""
    import uvicorn

    sock = bind(host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise HonedError("the test server failed to start")
            time.sleep(0.01)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
