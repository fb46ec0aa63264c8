"""`honed serve` and `honed chat` on real (tiny) models through every backend: the official
openai client, a schema fuzz run, a bounded load test, and the chat driven in a terminal."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from honed.config import QuantizeConfig, ServeConfig
from honed.quantize.stage import quantize
from honed.serve.run import build, concurrency, running

from ..conftest import save_tiny_causal

pytestmark = pytest.mark.integration
MESSAGES = [{"role": "user", "content": "add two and three"}]


def export(model: Path, method: str, out: Path) -> Path:
    return quantize(QuantizeConfig(model=str(model), method=method, output=out, check=False)).output


@pytest.fixture(scope="module")
def models(tiny_causal, tiny_causal_real_tokenizer, tmp_path_factory) -> dict[str, Path]:
    """The tiny model for each backend: safetensors, ONNX and GGUF."""
    work = tmp_path_factory.mktemp("served")
    return {
        "transformers": tiny_causal,
        "onnxruntime": export(tiny_causal, "onnx", work / "onnx"),
        "llama.cpp": export(tiny_causal_real_tokenizer, "gguf-f16", work / "gguf"),
    }


def serve(model: Path, **limits):
    app, _ = build(ServeConfig(model=str(model), served_name="tiny", **limits))
    return running(app)


@pytest.mark.parametrize("backend", ["transformers", "onnxruntime", "llama.cpp"])
def test_every_backend_serves_chat_and_completions(models, backend):
    with serve(models[backend]) as url:
        c = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        assert httpx.get(f"{url}/health").json()["backend"] == backend
        greedy = {"model": "tiny", "max_tokens": 12, "temperature": 0}
        whole = c.chat.completions.create(messages=MESSAGES, **greedy)
        chunks = list(c.chat.completions.create(messages=MESSAGES, stream=True, **greedy))
        streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks)
        assert streamed == whole.choices[0].message.content
        assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens > 0
        done = c.completions.create(prompt="add two and", **greedy)
        assert done.usage.prompt_tokens > 0 and done.choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize("backend", ["llama.cpp", "transformers"])
def test_concurrent_requests_decode_in_one_batch(models, backend):
    prompts = ["add two and", "one two three four", "the cat sat on"]
    bodies = [{"model": "tiny", "prompt": p, "max_tokens": 12, "temperature": 0} for p in prompts]
    greedy = {"model": "tiny", "max_tokens": 12, "temperature": 0}

    def ask(url: str, body: dict | None) -> dict | str:
        if body is not None:
            return httpx.post(f"{url}/v1/completions", json=body, timeout=60).json()
        c = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        chunks = c.chat.completions.create(messages=MESSAGES, stream=True, **greedy)
        return "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)

    with serve(models[backend]) as url:
        alone = [ask(url, body) for body in bodies]
        c = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        chat = c.chat.completions.create(messages=MESSAGES, **greedy).choices[0].message.content
    cfg = ServeConfig(model=str(models[backend]), served_name="tiny", max_concurrency=3)
    app, _ = build(cfg)
    slots = app.state.server.engine.backends
    assert len(slots) == 3 and len({id(slot) for slot in slots}) == 1  # one model, 3 lanes
    element = {"llama.cpp": 2, "transformers": 4}[backend]  # f16 cache; float32 model
    kv = 3 * slots[0].cells * 2 * 2 * (16 + 16) * element  # lanes, cells, layers, heads, dims
    assert slots[0].kv_bytes == kv and slots[0].cells >= 64
    assert concurrency(app) == (
        f", 3 requests at once (decoded together; KV cache up to {kv / 2**30:.2f} GiB: "
        f"{slots[0].cells} tokens each)"
    )
    with running(app) as url, ThreadPoolExecutor(4) as pool:  # one of the four waits
        *together, streamed = pool.map(lambda body: ask(url, body), [*bodies, None])
        listed = ask(url, {**bodies[0], "prompt": prompts})  # one request, decoded together
    slots[0].close()
    assert [a["choices"] for a in together] == [a["choices"] for a in alone]
    assert [a["usage"] for a in together] == [a["usage"] for a in alone]
    assert streamed == chat
    assert [c["text"] for c in listed["choices"]] == [a["choices"][0]["text"] for a in alone]
    app, _ = build(cfg.model_copy(update={"batching": False, "max_concurrency": 2}))
    copies = app.state.server.engine.backends
    assert len({id(copy) for copy in copies}) == 2  # --no-batching: a copy per slot
    assert concurrency(app) == ", 2 requests at once (one model copy each)"
    for copy in copies:
        copy.close()


def test_onnx_requests_run_side_by_side_in_one_session(models):
    bodies = [{"model": "tiny", "prompt": p, "max_tokens": 10, "temperature": 0}
              for p in ("add two and", "one two three four", "the cat sat on")]  # fmt: skip

    def ask(url: str, body: dict) -> dict:
        return httpx.post(f"{url}/v1/completions", json=body, timeout=60).json()["choices"]

    with serve(models["onnxruntime"]) as url:
        alone = [ask(url, body) for body in bodies]
    app, _ = build(ServeConfig(model=str(models["onnxruntime"]), served_name="tiny",
                               max_concurrency=3))  # fmt: skip
    slots = app.state.server.engine.backends
    assert len({id(slot) for slot in slots}) == 1  # one session, not three copies
    assert concurrency(app) == ", 3 requests at once (side by side in one onnxruntime session)"
    with running(app) as url, ThreadPoolExecutor(3) as pool:
        together = list(pool.map(lambda body: ask(url, body), bodies))
    assert together == alone


@pytest.mark.parametrize("backend", ["llama.cpp", "transformers"])
def test_n_sampled_choices_decode_together_each_as_its_seed_alone(models, backend):
    body = {"model": "tiny", "prompt": "one two three", "max_tokens": 8, "temperature": 1.0}
    app, _ = build(ServeConfig(model=str(models[backend]), served_name="tiny", max_concurrency=3))
    with running(app) as url:
        many = httpx.post(f"{url}/v1/completions", json={**body, "n": 3, "seed": 7}, timeout=60)
        alone = [
            httpx.post(f"{url}/v1/completions", json={**body, "seed": seed}, timeout=60).json()
            for seed in (7, 8, 9)
        ]
    app.state.server.engine.backends[0].close()
    texts = [a["choices"][0]["text"] for a in alone]
    assert [c["text"] for c in many.json()["choices"]] == texts and len(set(texts)) > 1


def test_text_to_text_models_serve_completions(tiny_seq2seq):
    app, _ = build(ServeConfig(model=str(tiny_seq2seq), served_name="tiny", max_concurrency=2))
    assert concurrency(app) == ", 2 requests at once (one model copy each)"  # cannot batch
    with running(app) as url:
        body = {"model": "tiny", "prompt": "where was she born", "max_tokens": 6}
        answer = httpx.post(f"{url}/v1/completions", json=body, timeout=60).json()
        assert answer["usage"]["completion_tokens"] > 0


def save_windowed(tiny_causal: Path, path: Path, window: int, family: str = "Starcoder2") -> Path:
    """A 2-layer, 64-dim StarCoder2 (or Gemma 2: one sliding layer, one global) whose sliding
    layers attend to the last `window` tokens only."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_causal)
    tok.save_pretrained(path)
    extra = {"head_dim": 16} if family == "Gemma2" else {}
    save_tiny_causal(path, tok, 256, family, sliding_window=window, **extra)
    return path


@pytest.fixture(scope="module")
def tiny_starcoder2(tiny_causal, tmp_path_factory) -> Path:
    return save_windowed(tiny_causal, tmp_path_factory.mktemp("tiny-starcoder2"), 6)


def test_sliding_window_models_serve_concurrent_requests_in_copies(tiny_starcoder2):
    """Its cache keeps a window a layer, which left padding would shift: no shared batch."""
    app, _ = build(ServeConfig(model=str(tiny_starcoder2), served_name="tiny", max_concurrency=2))
    assert concurrency(app) == ", 2 requests at once (one model copy each)"
    bodies = [
        {"model": "tiny", "prompt": prompt, "max_tokens": 12, "temperature": 0}
        for prompt in ("def add(a, b):", "one two three four five six seven")
    ]
    with running(app) as url:
        alone = [httpx.post(f"{url}/v1/completions", json=b, timeout=60).json() for b in bodies]
        with ThreadPoolExecutor(2) as pool:
            together = list(
                pool.map(lambda b: httpx.post(f"{url}/v1/completions", json=b, timeout=60), bodies)
            )
    assert [r.json()["choices"] for r in together] == [a["choices"] for a in alone]
    assert all(a["usage"]["completion_tokens"] == 12 for a in alone)  # well past the window


def test_a_schema_fuzz_run_finds_no_server_errors(tiny_causal):
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    with serve(tiny_causal, api_key="k", max_tokens_limit=8) as url:
        done = subprocess.run(
            [exe, "run", f"{url}/openapi.json", "--checks", "not_a_server_error",
             "--max-examples", "15", "-H", "Authorization: Bearer k", "--no-color"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]


@pytest.mark.parametrize(
    ("backend", "concurrency"),
    [("transformers", 1), ("llama.cpp", 4), ("transformers", 4)],
    ids=["one", "batched", "batched-transformers"],
)
def test_sixteen_clients_for_fifteen_seconds_get_no_server_error(models, backend, concurrency):
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    with serve(models[backend], max_queue=16, max_concurrency=concurrency) as url:
        stop_at = time.monotonic() + 15

        def client() -> None:
            with httpx.Client(timeout=60) as http:
                while time.monotonic() < stop_at:
                    start = time.perf_counter()
                    body = {"model": "tiny", "messages": MESSAGES, "max_tokens": 16}
                    answer = http.post(f"{url}/v1/chat/completions", json=body)
                    statuses[answer.status_code] += 1
                    latencies.append(time.perf_counter() - start)

        threads = [threading.Thread(target=client) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    p50, p95 = statistics.median(latencies), statistics.quantiles(latencies, n=20)[-1]
    print(f"\n16 clients, 15 s: {dict(statuses)}; latency p50 {p50:.3f} s, p95 {p95:.3f} s")
    assert statuses[200] > 16 and not any(code >= 500 for code in statuses)


def chat_session(model: Path, mode: str, first_line: str):
    """`honed chat MODEL` in a pseudo-terminal, after its banner and first exchange."""
    pexpect = pytest.importorskip("pexpect")
    honed = str(Path(sys.executable).parent / "honed")
    child = pexpect.spawn(honed, ["chat", str(model), "--max-new-tokens", "8"],
                          encoding="utf-8", timeout=120)  # fmt: skip
    child.expect(mode)
    child.expect("> ")
    child.sendline(first_line)
    return pexpect, child


def test_chat_in_a_terminal(tiny_causal):
    pexpect, child = chat_session(tiny_causal, "multi-turn", "add two and three")
    child.expect(r"\[[\d.]+ s, first token [\d.]+ s, [\d.]+ tok/s, \d+ tokens\]")
    for command, answer in [
        ("/set temperature 0.2", "temperature 0.2"),
        ("/set temperature hot", "bad value for temperature"),
        ("/system be brief", "system message set"),
        ("/reset", "conversation cleared"),
        ("/nonsense", "unknown command"),
    ]:
        child.expect("> ")
        child.sendline(command)
        child.expect(answer)
    child.expect("> ")
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_chat_with_a_text_to_text_model_is_single_turn(tiny_seq2seq):
    pexpect, child = chat_session(tiny_seq2seq, "single-turn", "where was she born")
    child.expect(r"tok/s")
    child.sendeof()
    child.expect(pexpect.EOF)


@pytest.mark.parametrize("family", ["Starcoder2", "Gemma2"])
def test_a_sliding_window_model_served_within_its_window_decodes_requests_together(
    tiny_causal, tmp_path, family
):
    """Within its 32-token window every key stays in view: plain caches hold what its own
    sliding ones would, so with --n-ctx 32 requests join one batch and get the replies its
    own cache gives each alone (the same server without batching)."""
    from honed.runtime import load_backend

    model = save_windowed(tiny_causal, tmp_path / "windowed", 32, family)
    wide = load_backend(str(model), "transformers")
    assert "--n-ctx 32" in wide.batch_blocker  # served at its own 256: copies, and why
    wide.close()
    cfg = ServeConfig(model=str(model), served_name="tiny", max_concurrency=2, n_ctx=32)
    bodies = [
        {"model": "tiny", "prompt": prompt, "max_tokens": 12, "temperature": 0}
        for prompt in ("def add(a, b):", "one two three four five six seven")
    ]

    def ask(url: str, body: dict) -> list:
        return httpx.post(f"{url}/v1/completions", json=body, timeout=60).json()["choices"]

    app, _ = build(cfg.model_copy(update={"batching": False}))
    assert concurrency(app) == ", 2 requests at once (one model copy each)"
    with running(app) as url:
        alone = [ask(url, body) for body in bodies]
        too_long = httpx.post(f"{url}/v1/completions", json={**bodies[0], "max_tokens": 30})
    assert too_long.status_code == 400  # prompt + max_tokens past the 32 served
    app, _ = build(cfg)
    assert "decoded together" in concurrency(app)
    with running(app) as url, ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda body: ask(url, body), bodies))
    app.state.server.engine.backends[0].close()
    assert together == alone
