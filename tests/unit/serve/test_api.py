"""The OpenAI-compatible API over a scripted backend: formats, limits, errors, cancellation."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from honed.config import ServeConfig
from honed.runtime.base import GenerationParams, Usage
from honed.serve.api import create_app
from honed.serve.engine import Engine
from honed.serve.run import running

KEY = "sekret"


class Scripted:
    """A backend that writes ' w0 w1 ...' (one word a token), optionally slowly."""

    name = "scripted"
    model_ref = "scripted"
    context_size = 64
    has_chat_template = True

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.stopped_early = threading.Event()
        self.prompts: list[str] = []
        self.seeds: list[int | None] = []

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        return " ".join(f"{m['role']}: {m['content']}" for m in messages) + " assistant:"

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def tokenize(self, text: str) -> list[str]:
        return text.split()

    def stream(
        self, prompt: str, params: GenerationParams, usage: Usage | None = None
    ) -> Iterator[str]:
        self.prompts.append(prompt)
        self.seeds.append(params.seed)
        made, started = 0, time.perf_counter()
        try:
            for i in range(params.max_new_tokens):
                time.sleep(self.delay)
                made += 1
                yield f" w{i}"
        finally:
            if made < params.max_new_tokens:
                self.stopped_early.set()
            if usage is not None:
                usage.prompt_tokens, usage.completion_tokens = len(prompt.split()), made
                usage.finish_reason, usage.ttft_s = "length", time.perf_counter() - started

    def close(self) -> None:
        pass


def serve(backend: Scripted, **limits) -> object:
    cfg = ServeConfig(model="scripted", **limits)
    return running(create_app(Engine([backend], cfg.max_queue), cfg, "scripted"))


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(Scripted(), api_key=KEY, max_tokens_limit=32) as base:
        yield base


def client(url: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def post(url: str, path: str, body: object, **kw) -> httpx.Response:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    content = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return httpx.post(f"{url}{path}", content=content, headers=headers, timeout=10, **kw)


def test_completions_and_chat_with_the_openai_client(url):
    c = client(url)
    assert [m.id for m in c.models.list()] == ["scripted"]
    done = c.completions.create(model="scripted", prompt="a b c", max_tokens=3)
    assert done.choices[0].text == " w0 w1 w2" and done.choices[0].finish_reason == "length"
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (3, 3)
    chat = c.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert chat.choices[0].message.content == " w0 w1"
    assert chat.usage.total_tokens == chat.usage.prompt_tokens + 2


def test_streaming_carries_text_and_usage(url):
    c = client(url)
    chunks = list(
        c.chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": "hi"}], max_tokens=4,
            stream=True, stream_options={"include_usage": True},
        )
    )  # fmt: skip
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == " w0 w1 w2 w3"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
    pieces = list(c.completions.create(model="scripted", prompt="x", max_tokens=2, stream=True))
    assert "".join(p.choices[0].text for p in pieces) == " w0 w1"
    assert pieces[-1].choices[0].finish_reason == "length" and pieces[-1].usage.total_tokens == 3


def test_a_list_of_prompts_gets_a_choice_each(url):
    done = client(url).completions.create(model="scripted", prompt=["a", "b c"], max_tokens=1)
    assert [ch.index for ch in done.choices] == [0, 1] and done.usage.prompt_tokens == 3


def test_n_choices_per_prompt_each_seeded_apart() -> None:
    backend = Scripted()
    with serve(backend) as base:
        c = openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0)
        ask = {"model": "scripted", "max_tokens": 2, "n": 2, "seed": 7}
        done = c.completions.create(prompt=["a", "b c"], **ask)
        chat = c.chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": "hi"}], max_tokens=1, n=3
        )
    assert [ch.index for ch in done.choices] == [0, 1, 2, 3]
    assert backend.prompts[:4] == ["a", "a", "b c", "b c"]  # prompt by prompt, n of each
    assert backend.seeds == [7, 8, 7, 8, None, None, None]  # choice i: seed + i
    assert done.usage.prompt_tokens == 3 and done.usage.completion_tokens == 8  # prompts once
    assert [ch.index for ch in chat.choices] == [0, 1, 2] and chat.usage.completion_tokens == 3


def test_the_api_key_is_required_except_for_health(url):
    with pytest.raises(openai.AuthenticationError):
        client(url, key="wrong").models.list()
    assert httpx.get(f"{url}/v1/models").status_code == 401
    assert httpx.get(f"{url}/health").json()["status"] == "ok"


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ("{not json", 400, "not valid JSON"),
        ({"model": "scripted", "prompt": 5}, 400, "'prompt'"),
        ({"model": "scripted", "prompt": "x", "temperature": "hot"}, 400, "'temperature'"),
        ({"model": "scripted", "prompt": "x", "max_tokens": -1}, 400, "'max_tokens'"),
        ({"model": "other", "prompt": "x"}, 404, "use 'scripted'"),
        ({"model": "scripted", "prompt": "x", "max_tokens": 33}, 400, "limit of 32"),
        ({"model": "scripted", "prompt": "w " * 60, "max_tokens": 10}, 400, "context holds 64"),
        ({"model": "scripted", "prompt": "x", "n": 0}, 400, "'n'"),
        ({"model": "scripted", "prompt": "x", "n": 2, "stream": True}, 400, "(n=1)"),
        ({"model": "scripted", "prompt": ["x", "y"], "n": 9}, 400, "x n=9 choices"),
        ({"prompt": "x"}, 400, "'model'"),
        ([1, 2], 400, "must be a JSON object"),
    ],
)
def test_bad_requests_get_a_clear_4xx(url, body, status, says):
    answer = post(url, "/v1/completions", body)
    assert answer.status_code == status
    assert says in answer.json()["error"]["message"]


def test_routes_methods_and_bodies_are_checked(url):
    assert post(url, "/v1/nothing", {}).status_code == 404
    assert httpx.get(f"{url}/v1/completions", headers={"Authorization": f"Bearer {KEY}"}
                     ).status_code == 405  # fmt: skip
    big = {"model": "scripted", "prompt": "x" * 2_000_000}
    assert post(url, "/v1/completions", big).status_code == 413
    answer = post(url, "/v1/chat/completions", {"model": "scripted", "messages": []})
    assert answer.status_code == 400 and "messages" in answer.json()["error"]["message"]
    assert post(url, "/v1/completions", {"model": "scripted", "prompt": "x"}).status_code == 200


def test_metrics_count_requests_tokens_and_latency(url):
    client(url).completions.create(model="scripted", prompt="x", max_tokens=2)
    post(url, "/v1/completions", "{")
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    assert 'honed_requests_total{route="/v1/completions",status="200"}' in text
    assert 'honed_request_errors_total{route="/v1/completions",type="400"}' in text
    assert "honed_time_to_first_token_seconds_bucket" in text
    assert "honed_request_latency_seconds_count" in text
    assert "honed_generated_tokens_total" in text


def wait_until_idle(base: str) -> None:
    """The model is freed once the generation stops at its next token."""
    for _ in range(100):
        health = httpx.get(f"{base}/health").json()
        if health["running"] == 0 and health["waiting"] == 0:
            return
        time.sleep(0.05)
    pytest.fail(f"still busy: {health}")


def test_a_full_queue_answers_429_with_retry_after():
    slow = Scripted(delay=0.2)  # the first request holds the model for 12 s (or until it leaves)
    with serve(slow, max_queue=0) as base:
        body = {"model": "scripted", "prompt": "x", "max_tokens": 60, "stream": True}
        with httpx.stream("POST", f"{base}/v1/completions", json=body, timeout=10) as first:
            next(first.iter_lines())  # the first request holds the only model
            busy = httpx.post(f"{base}/v1/completions", json={**body, "stream": False})
            assert busy.status_code == 429 and int(busy.headers["Retry-After"]) >= 1
        wait_until_idle(base)
        quick = {**body, "stream": False, "max_tokens": 2}
        again = httpx.post(f"{base}/v1/completions", json=quick, timeout=10)
        assert again.status_code == 200


def test_a_client_that_disconnects_stops_its_generation():
    slow = Scripted(delay=0.05)
    with serve(slow) as base:
        body = {"model": "scripted", "prompt": "x", "max_tokens": 60, "stream": True}
        with httpx.stream("POST", f"{base}/v1/completions", json=body, timeout=10) as answer:
            lines = answer.iter_lines()
            next(lines), next(lines)
        assert slow.stopped_early.wait(5)
        wait_until_idle(base)


def test_a_slow_request_times_out_with_504_and_the_server_goes_on():
    slow = Scripted(delay=0.05)
    with serve(slow, request_timeout_s=0.3) as base:
        body = {"model": "scripted", "prompt": "x", "max_tokens": 60}
        answer = httpx.post(f"{base}/v1/completions", json=body, timeout=10)
        assert answer.status_code == 504 and "request-timeout-s" in answer.text
        assert slow.stopped_early.wait(5)
        quick = httpx.post(f"{base}/v1/completions", json={**body, "max_tokens": 2}, timeout=10)
        assert quick.status_code == 200


class Overlapping(Scripted):
    """Counts how many of its streams run at once."""

    def __init__(self, concurrent: bool) -> None:
        super().__init__(delay=0.02)
        self.concurrent_streams = concurrent
        self.running = self.most = 0
        self.lock = threading.Lock()

    def stream(self, prompt, params, usage=None):  # noqa: ANN001, ANN201
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            yield from super().stream(prompt, params, usage)
        finally:
            with self.lock:
                self.running -= 1


@pytest.mark.parametrize("concurrent", [True, False], ids=["batched model", "model copy"])
def test_the_prompts_of_one_request_run_together_on_a_batched_model(concurrent: bool) -> None:
    backend = Overlapping(concurrent)
    with serve(backend) as base:
        body = {"model": "scripted", "prompt": ["a", "b c", "d e f"], "max_tokens": 5}
        done = httpx.post(f"{base}/v1/completions", json=body, timeout=30).json()
    assert [c["index"] for c in done["choices"]] == [0, 1, 2]
    assert {c["text"] for c in done["choices"]} == {" w0 w1 w2 w3 w4"}
    assert done["usage"]["prompt_tokens"] == 6 and done["usage"]["completion_tokens"] == 15
    assert backend.most == (3 if concurrent else 1)
