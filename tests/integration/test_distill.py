"""`honed distill` on tiny models: logits mode learns the teacher and caches it, sequence
mode keeps only the teacher answers that pass, students are built, bad input is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from honed.config import DistillConfig
from honed.distill import kd
from honed.distill.stage import distill, warn_if_larger
from honed.errors import HonedError
from honed.evaluate import tasks
from honed.runtime.base import Completion, GenerationParams, load_backend

pytestmark = pytest.mark.integration
SMALL = "llama:num_hidden_layers=1,hidden_size=32,num_attention_heads=2,intermediate_size=64"


def config(tmp_path: Path, teacher: Path, data: Path, **values) -> DistillConfig:
    base = dict(
        teacher=str(teacher),
        data=str(data),
        method="full",
        output=tmp_path / "student",
        max_steps=24,
        batch_size=8,
        learning_rate=3e-3,
        logging_steps=4,
        eval_steps=100,
        save_steps=100,
        samples=0,
        max_length=64,
        cache_dir=tmp_path / "kd",
        top_k=8,
        alpha=1.0,
        max_eval_samples=8,
        overwrite=True,
    )
    return DistillConfig(**{**base, **values})


def kd_curve(artifact: Path) -> list[float]:
    lines = (artifact / "metrics.jsonl").read_text().splitlines()
    return [row["kd"] for row in map(json.loads, lines) if "kd" in row]


def test_logits_mode_learns_the_teacher_and_reruns_from_the_cache(
    tiny_causal, arith_data, tmp_path, monkeypatch
):
    cfg = config(tmp_path, tiny_causal, arith_data, student_config=SMALL)
    released = []
    release = kd.Teacher.release
    monkeypatch.setattr(
        kd.Teacher, "release", lambda self: released.append(self._model) or release(self)
    )
    first = distill(cfg)
    curve = kd_curve(first.output)
    assert len(curve) >= 3 and curve[-1] < 0.8 * curve[0]  # the KL to the teacher went down
    record = first.manifest["distill"]
    assert first.manifest["stage"] == "distill" and record["mode"] == "logits"
    # the teacher ran on every sequence before training, was freed, and training only read
    assert record["teacher_forward_passes"] > 0 and record["cache"]["filled_before_training"] > 0
    assert record["cache"]["misses"] == 0 and record["cache"]["hits"] > 0
    assert len(released) == 1 and released[0] is not None
    assert record["student_init"]["kind"] == "config"
    assert Path(record["student_init"]["ref"]).name == "student-init"
    assert record["loss"] == {
        "alpha": 1.0,
        "kd": "forward_kl",
        "temperature": 1.0,
        "beta": 0.5,
        "top_k": 8,
        "on_policy": 0.0,
    }

    def no_teacher(self):
        raise AssertionError("the teacher was loaded although every sequence was cached")

    monkeypatch.setattr(kd.Teacher, "model", no_teacher)
    again = distill(cfg).manifest["distill"]
    assert again["teacher_forward_passes"] == 0 and again["cache"]["misses"] == 0
    assert again["cache"]["filled_before_training"] == 0
    assert again["cache"]["hits"] > 0 and again["data_sha256"] == record["data_sha256"]


def test_keep_best_keeps_the_distilled_step_with_the_lowest_validation_loss(
    tiny_causal, arith_data, tmp_path
):
    cfg = config(tmp_path, tiny_causal, arith_data, student_config=SMALL, keep_best=True,
                 eval_steps=8, save_steps=8, save_total_limit=1)  # fmt: skip
    metrics = distill(cfg).manifest["metrics"]
    lines = (cfg.output / "metrics.jsonl").read_text().splitlines()
    evals = {r["step"]: r["eval_loss"] for r in map(json.loads, lines) if "eval_loss" in r}
    trained = {step: loss for step, loss in evals.items() if step}  # step 0: before training
    assert sorted(trained) == [8, 16, 24]
    assert metrics["best_step"] == min(trained, key=trained.get)
    assert metrics["eval_loss_after"] == pytest.approx(min(trained.values()))


def test_on_policy_batches_are_student_samples_scored_by_the_teacher(
    tiny_causal, arith_data, tmp_path
):
    cfg = config(
        tmp_path,
        tiny_causal,
        arith_data,
        student_config=SMALL,
        on_policy=1.0,
        on_policy_max_new_tokens=6,
    )
    result = distill(cfg)
    record = result.manifest["distill"]
    assert record["on_policy_batches"] == 24 and record["loss"]["on_policy"] == 1.0
    assert record["teacher_forward_passes"] >= 24  # one per sampled batch: never cached
    curve = kd_curve(result.output)
    assert len(curve) >= 3 and curve[-1] < 0.8 * curve[0]  # the KL on its own samples fell
    with pytest.raises(HonedError, match="--mode logits"):
        distill(config(tmp_path, tiny_causal, "mbpp", mode="sequence", on_policy=0.5))


def test_a_resumed_on_policy_run_draws_and_counts_as_the_uninterrupted_one(
    tiny_causal, arith_data, tmp_path, interrupt_after
):
    from honed.train.finetune import Interrupted

    kw = {"student_config": SMALL, "on_policy": 0.5, "on_policy_max_new_tokens": 4}
    kw |= {"max_steps": 12, "save_steps": 4}
    whole = distill(config(tmp_path, tiny_causal, arith_data, **kw)).manifest["distill"]
    out = tmp_path / "resumed"
    interrupt_after(6)
    with pytest.raises(Interrupted):
        distill(config(tmp_path, tiny_causal, arith_data, output=out, **kw))
    interrupt_after(None)
    cfg = config(tmp_path, tiny_causal, arith_data, output=out, resume=True, overwrite=False, **kw)
    resumed = distill(cfg).manifest["distill"]
    assert 0 < whole["on_policy_batches"] < 12
    assert resumed["on_policy_batches"] == whole["on_policy_batches"]


def test_a_student_pruned_from_the_teacher_keeps_the_chosen_layers(
    tiny_causal, arith_data, tmp_path
):
    cfg = config(
        tmp_path,
        tiny_causal,
        arith_data,
        student_from_teacher="1",
        max_steps=2,
        kd_loss="jsd",
        temperature=2.0,
    )
    result = distill(cfg)
    init = Path(result.manifest["distill"]["student_init"]["ref"])
    assert json.loads((init / "config.json").read_text())["num_hidden_layers"] == 1
    model = load_backend(str(result.output))
    try:
        (done,) = model.generate(["add two and three"], GenerationParams(max_new_tokens=4))
        assert done.completion_tokens > 0
    finally:
        model.close()


def test_logits_mode_refuses_different_tokenizers(
    tiny_causal, tiny_causal_real_tokenizer, arith_data, tmp_path
):
    cfg = config(tmp_path, tiny_causal, arith_data, student=str(tiny_causal_real_tokenizer))
    with pytest.raises(HonedError, match="same tokenizer.*--mode sequence"):
        distill(cfg)
    assert not (tmp_path / "student").exists()


def test_a_gguf_teacher_scored_by_llama_cpp(
    tiny_causal, tiny_causal_real_tokenizer, arith_data, tmp_path
):
    """--teacher-backend llama.cpp: the file's own logits (those torch computes from the same
    weights, to f16 rounding), a cache of their own, and the student learns them."""
    from honed.config import QuantizeConfig
    from honed.quantize.stage import quantize

    gguf = quantize(
        QuantizeConfig(
            model=str(tiny_causal_real_tokenizer),
            method="gguf-f16",
            output=tmp_path / "gguf",
            check=False,
        )
    ).output
    rows = [list(range(5, 45)), list(range(100, 130))]
    vocab = 49152
    by_torch = kd.Teacher(str(tiny_causal_real_tokenizer), "float32", False).top_k(rows, 4, vocab)
    by_llama = kd.LlamaCppTeacher(str(gguf), n_ctx=64, threads=1)
    for (_, want), (_, got) in zip(by_torch, by_llama.top_k(rows, 4, vocab), strict=True):
        assert got.shape == want.shape and torch.allclose(got, want, atol=2e-2)
    by_llama.release()

    cfg = config(tmp_path, gguf, arith_data, student_config=SMALL, teacher_backend="llama.cpp")
    done = distill(cfg)
    curve = kd_curve(done.output)
    assert curve[-1] < 0.8 * curve[0]
    record = done.manifest["distill"]
    assert record["teacher"]["scored_by"] == "llama.cpp" and record["teacher_forward_passes"] > 0
    by_torch_cfg = cfg.model_copy(update={"teacher_backend": "auto", "output": tmp_path / "s2"})
    assert distill(by_torch_cfg).manifest["distill"]["cache"]["filled_before_training"] > 0
    assert len(list((tmp_path / "kd").iterdir())) == 2  # one cache each, never mixed

    not_gguf = config(
        tmp_path, tiny_causal, arith_data, student_config=SMALL, teacher_backend="llama.cpp"
    )
    with pytest.raises(HonedError, match="scores a GGUF teacher"):
        distill(not_gguf)
    assert (tmp_path / "student" / "manifest.json").is_file()  # refused before touching it


def test_bad_student_choices_get_one_line(tiny_causal, arith_data, tmp_path):
    with pytest.raises(HonedError, match="exactly one of"):
        distill(config(tmp_path, tiny_causal, arith_data))
    with pytest.raises(HonedError, match="exactly one of"):
        distill(config(tmp_path, tiny_causal, arith_data, student="x", student_config=SMALL))
    with pytest.raises(HonedError, match="between 1 and 2"):
        distill(config(tmp_path, tiny_causal, arith_data, student_from_teacher="5"))
    with pytest.raises(HonedError, match="key=value"):
        distill(config(tmp_path, tiny_causal, arith_data, student_config="llama:oops"))


def test_a_student_larger_than_its_teacher_is_a_warning(tiny_causal, tmp_path, caplog):
    big = tmp_path / "big"
    from honed.distill.student import student_from_config

    student_from_config(
        SMALL.replace("hidden_size=32", "hidden_size=256"), str(tiny_causal), big, seed=0
    )
    counts = warn_if_larger(str(tiny_causal), str(big))
    assert counts["student"] > counts["teacher"]
    assert "larger than the teacher" in caplog.text


class ScriptedTeacher:
    """Answers MBPP train problems: the reference code for the first `good`, junk otherwise."""

    name, model_ref, context_size = "scripted", "teacher", 4096
    has_chat_template = False

    def __init__(self, good: int) -> None:
        problems = tasks.mbpp_problems("train")
        self.good = {p.prompt.strip(): p.reference for p in problems[:good]}

    def generate(self, prompts: list[str], params: GenerationParams) -> list[Completion]:
        out = []
        for prompt in prompts:
            code = next((c for p, c in self.good.items() if p in prompt), "def nope():\n    pass\n")
            out.append(Completion(code, 10, 10, 0.0, 0.01))
        return out

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def close(self) -> None:
        pass


def test_sequence_mode_trains_only_on_answers_that_pass(tiny_causal, tmp_path, monkeypatch):
    import honed.evaluate.run as run

    real = run.evaluate
    monkeypatch.setattr(run, "evaluate", lambda cfg, backend=None: real(cfg, ScriptedTeacher(3)))
    cfg = config(
        tmp_path,
        tiny_causal,
        "mbpp",
        mode="sequence",
        student=str(tiny_causal),
        max_samples=6,
        candidates=2,
        teacher_temperature=0.7,
        max_steps=2,
        max_length=512,
        val_fraction=0.0,
    )
    result = distill(cfg)
    made = result.manifest["distill"]["teacher_data"]
    assert made["candidates"] == 12 and made["passed"] == 6
    assert made["kept"] == 3 and made["problems_covered"] == 3  # duplicates dropped
    rows = [json.loads(line) for line in Path(made["rows"]).read_text().splitlines()]
    references = {p.task_id: p.reference.strip() for p in tasks.mbpp_problems("train")}
    assert all(r["completion"] == references[r["task_id"]] for r in rows)


def test_sequence_mode_on_your_own_problems(tiny_causal, tmp_path, monkeypatch):
    """--data code:FILE: the teacher answers the file's problems, the passing answers stay."""
    import honed.evaluate.run as run
    from honed.data.builtin import find_data_file

    lines = find_data_file("mbpp.jsonl").read_text().splitlines()
    raw = [row for row in map(json.loads, lines) if 601 <= row["task_id"] <= 604]
    mine = tmp_path / "mine.jsonl"
    mine.write_text("".join(json.dumps(row) + "\n" for row in raw))
    real = run.evaluate
    monkeypatch.setattr(run, "evaluate", lambda cfg, backend=None: real(cfg, ScriptedTeacher(2)))
    cfg = config(tmp_path, tiny_causal, f"code:{mine}", mode="sequence",
                 student=str(tiny_causal), candidates=1, teacher_temperature=0.0, max_steps=2,
                 max_length=512, val_fraction=0.0)  # fmt: skip
    made = distill(cfg).manifest["distill"]["teacher_data"]
    assert made["candidates"] == 4 and made["kept"] == 2
    rows = [json.loads(line) for line in Path(made["rows"]).read_text().splitlines()]
    assert sorted(r["task_id"] for r in rows) == ["601", "602"]  # the file's own ids


class StoppedTeacher(ScriptedTeacher):
    """Ctrl-C at the teacher's generate call number `stop_at`; counts the prompts it answers."""

    def __init__(self, good: int, stop_at: int = 0) -> None:
        super().__init__(good)
        self.stop_at, self.calls, self.answered = stop_at, 0, 0

    def generate(self, prompts: list[str], params: GenerationParams) -> list[Completion]:
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        self.answered += len(prompts)
        return super().generate(prompts, params)


def test_the_teachers_answers_continue_after_a_stop(tiny_causal, tmp_path, monkeypatch):
    """A distillation stopped while the teacher answers keeps the answers made so far: run
    again (here with --resume, before any training), the teacher answers only the rest."""
    import honed.evaluate.run as run

    real, teacher = run.evaluate, StoppedTeacher(3, stop_at=2)
    monkeypatch.setattr(run, "evaluate", lambda cfg, backend=None: real(cfg, teacher))
    answers = dict(mode="sequence", max_samples=10, candidates=1, teacher_temperature=0.0)
    cfg = config(tmp_path, tiny_causal, "mbpp", student=str(tiny_causal), max_steps=1,
                 max_length=512, val_fraction=0.0, **answers)  # fmt: skip
    with pytest.raises(KeyboardInterrupt):  # the teacher answers 8 prompts per call
        distill(cfg)
    assert not (tmp_path / "student.tmp").exists()  # the training had not begun
    teacher = StoppedTeacher(3)
    made = distill(cfg.model_copy(update={"resume": True})).manifest["distill"]["teacher_data"]
    assert teacher.answered == 2 and made["candidates"] == 10 and made["kept"] == 3


def test_the_teachers_answers_to_text_data_continue_after_a_stop(tmp_path):
    """Text data: each answer goes to a journal as it comes; a stopped run's answers are
    reused, only the rest is generated, and the rows are those of an uninterrupted run."""
    from honed.distill.textdata import answers
    from honed.evaluate import journal

    cfg = DistillConfig(teacher="t", data="d", candidates=2, teacher_temperature=0.5)
    prompts, wanted = [f"what is {i} + {i}?" for i in range(10)], {"teacher": "t"}
    with pytest.raises(KeyboardInterrupt):  # 8 prompts per call: the 3rd call is sample 2
        answers(cfg, StoppedTeacher(0, stop_at=3), prompts, journal.begin(tmp_path, wanted, False))
    assert journal.matches(tmp_path, wanted) and not journal.matches(tmp_path, {"other": 1})
    teacher = StoppedTeacher(0)
    rows, counts = answers(cfg, teacher, prompts, journal.begin(tmp_path, wanted, True))
    assert teacher.answered == 10 and counts["answers_reused"] == 10
    assert rows == answers(cfg, StoppedTeacher(0), prompts, journal.Journal(None))[0]
    journal.begin(tmp_path, wanted, False)  # a fresh start forgets the old answers
    assert not journal.matches(tmp_path, wanted)


def on_teacher_answers(tmp_path, model, monkeypatch, teacher, targets: str, **more) -> dict:
    """Logits mode on the first 4 MBPP train problems with `teacher` answering them once;
    returns the student's manifest."""
    import honed.evaluate.run as run

    real = run.evaluate
    monkeypatch.setattr(run, "evaluate", lambda cfg, backend=None: real(cfg, teacher))
    answers = dict(targets=targets, max_samples=4, candidates=1, val_fraction=0.0, **more)
    cfg = config(tmp_path, model, "mbpp", student=str(model), max_steps=2,
                 max_length=512, **answers)  # fmt: skip
    return distill(cfg).manifest


def test_logits_mode_on_the_teachers_passing_answers(tiny_causal, tmp_path, monkeypatch):
    """--targets teacher: the teacher answers the train problems first, and logit KD runs on
    the answers that pass (sequence-level + word-level KD)."""
    manifest = on_teacher_answers(tmp_path, tiny_causal, monkeypatch, ScriptedTeacher(2), "teacher")
    record = manifest["distill"]
    assert record["mode"] == "logits" and record["targets"] == "teacher"
    made = record["teacher_data"]
    assert made["candidates"] == 4 and made["kept"] == 2
    assert manifest["data"]["spec"] == made["rows"] and manifest["data"]["train_rows"] == 2
    assert record["teacher_forward_passes"] > 0 and record["cache"]["hits"] > 0
    rows = [json.loads(line) for line in Path(made["rows"]).read_text().splitlines()]
    references = {p.task_id: p.reference.strip() for p in tasks.mbpp_problems("train")[:2]}
    assert {r["task_id"]: r["completion"] for r in rows} == references


class RewritingTeacher(ScriptedTeacher):
    """Passes the first `good` problems with its own variant of the reference code."""

    def __init__(self, good: int) -> None:
        super().__init__(good)
        # a statement, not a comment: MBPP's stops cut an answer at its first "\n#"
        self.good = {p: f"{code}\nTEACHERS_OWN = True\n" for p, code in self.good.items()}


def test_logits_mode_on_the_data_and_the_teachers_answers(tiny_causal, tmp_path, monkeypatch):
    """--targets both: every reference row, plus each passing teacher answer that differs
    from its reference, under the same prompt."""
    manifest = on_teacher_answers(tmp_path, tiny_causal, monkeypatch, RewritingTeacher(2), "both")
    made = manifest["distill"]["teacher_data"]
    assert manifest["distill"]["targets"] == "both"
    assert made["kept"] == 2 and made["references"] == 4 and made["teacher_rows_added"] == 2
    assert manifest["data"]["spec"] == made["rows"] and manifest["data"]["train_rows"] == 6
    # validated on MBPP's own validation split, as a plain fine-tune on mbpp is
    assert manifest["data"]["validation_rows"] == 90
    assert manifest["config"]["eval_data"].endswith("teacher-data/validation.jsonl")
    rows = [json.loads(line) for line in Path(made["rows"]).read_text().splitlines()]
    problems = tasks.mbpp_problems("train")[:4]
    assert [r["completion"] for r in rows[:4]] == [p.reference.strip() for p in problems]
    assert [r["prompt"] for r in rows[4:]] == [p.prompt for p in problems[:2]]
    assert all(r["completion"].endswith("TEACHERS_OWN = True") for r in rows[4:])


class EchoTeacher(ScriptedTeacher):
    """Answers every prompt with the same text per sample; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, prompts: list[str], params: GenerationParams) -> list[Completion]:
        self.calls += 1
        return [
            Completion(f"answer {params.seed % 2}\nTask: junk", 3, 3, 0.0, 0.01) for _ in prompts
        ]


def text_sequence(tmp_path: Path, model: Path, data: Path, **values) -> DistillConfig:
    """Sequence mode on the arithmetic jsonl, the tiny model as teacher and student."""
    base = dict(mode="sequence", student=str(model), val_fraction=0.0)
    return config(tmp_path, model, data, **{**base, **values})


def test_sequence_mode_on_text_data_keeps_distinct_teacher_answers(
    tiny_causal, arith_data, tmp_path, monkeypatch
):
    import honed.runtime.configured as configured

    teacher = EchoTeacher()
    monkeypatch.setattr(configured, "load_configured", lambda cfg, batch_size=None: teacher)
    cfg = text_sequence(
        tmp_path, tiny_causal, arith_data, max_samples=10, candidates=3, max_steps=2
    )
    result = distill(cfg)
    made = result.manifest["distill"]["teacher_data"]
    assert made["candidates"] == 30 and made["kept"] == 20 and made["prompts_covered"] == 10
    assert result.manifest["data"]["train_rows"] == 20  # --max-samples chose the prompts only
    rows = [json.loads(line) for line in Path(made["rows"]).read_text().splitlines()]
    assert {r["completion"] for r in rows} == {"answer 0", "answer 1"}  # cut at the next row
    first = json.loads(arith_data.read_text().splitlines()[0])
    assert rows[0]["prompt"] == first["prompt"]
    calls = teacher.calls
    assert distill(cfg).manifest["distill"]["teacher_data"]["reused"] is True
    assert teacher.calls == calls  # the teacher's answers were reused


def test_sequence_mode_with_both_targets_adds_the_datas_answers(
    tiny_causal, arith_data, tmp_path, monkeypatch
):
    import honed.runtime.configured as configured

    monkeypatch.setattr(configured, "load_configured", lambda cfg, batch_size=None: EchoTeacher())
    cfg = text_sequence(
        tmp_path, tiny_causal, arith_data, max_samples=4, candidates=2, max_steps=1,
        targets="both",
    )  # fmt: skip
    manifest = distill(cfg).manifest
    made = manifest["distill"]["teacher_data"]
    assert manifest["distill"]["targets"] == "both"
    assert made["kept"] == 8 and made["references"] == 4 and made["teacher_rows_added"] == 8
    assert manifest["data"]["train_rows"] == 12
    data = [json.loads(line) for line in arith_data.read_text().splitlines()[:4]]
    rows = [json.loads(line) for line in Path(made["rows"]).read_text().splitlines()]
    assert rows[:4] == [{"prompt": d["prompt"], "completion": d["completion"]} for d in data]


def test_sequence_mode_with_a_real_tiny_teacher_on_text_data(tiny_causal, arith_data, tmp_path):
    cfg = text_sequence(
        tmp_path, tiny_causal, arith_data, max_samples=4, candidates=2, max_steps=1,
        teacher_max_new_tokens=8, teacher_temperature=1.0,
    )  # fmt: skip
    result = distill(cfg)
    assert result.manifest["distill"]["teacher_data"]["kept"] >= 1
    assert (result.output / "manifest.json").is_file()


def test_a_teacher_fine_tuned_with_lora_teaches_through_its_merged_weights(
    tiny_causal, arith_data, tmp_path
):
    from honed.config import FinetuneConfig
    from honed.distill.stage import fingerprint
    from honed.train.finetune import finetune

    tuned = tmp_path / "teacher-tuned"
    ft = dict(max_steps=4, batch_size=8, learning_rate=1e-2, samples=0, report_to="none")
    finetune(FinetuneConfig(model=str(tiny_causal), data=str(arith_data), output=tuned, **ft))
    assert (tuned / "adapter_model.safetensors").is_file()
    cfg = config(tmp_path, tuned, arith_data, student_config=SMALL, max_steps=4)
    record = distill(cfg).manifest["distill"]  # the student built on the adapter's tokenizer
    # the adapter's own weights make the cache's key: not its base's
    assert record["teacher"]["sha256"] == fingerprint(str(tuned)) != fingerprint(str(tiny_causal))
    assert record["teacher_forward_passes"] > 0
    # counted through its base, the teacher is as large as the student it was made from
    assert warn_if_larger(str(tuned), str(tiny_causal)) == {
        "teacher": warn_if_larger(str(tiny_causal), str(tiny_causal))["teacher"],
        "student": warn_if_larger(str(tiny_causal), str(tiny_causal))["student"],
    }


class HintReadingTeacher(ScriptedTeacher):
    """Solves nothing alone; shown a reference answer, writes its own variant of it."""

    def __init__(self) -> None:
        super().__init__(0)
        self.prompts: list[str] = []

    def generate(self, prompts: list[str], params: GenerationParams) -> list[Completion]:
        self.prompts += prompts
        out = []
        for prompt in prompts:
            shown = prompt.split("A correct solution", 1)[1:]
            code = shown[0].split("```python\n", 1)[1].split("\n```", 1)[0] if shown else "x = ("
            out.append(Completion(f"{code}\nTEACHERS_OWN = True\n", 10, 10, 0.0, 0.01))
        return out


def test_a_hinted_teacher_answers_every_problem_and_the_student_never_sees_the_hint(
    tiny_causal, tmp_path, monkeypatch
):
    """--teacher-hint: the teacher is shown each reference answer and writes its own; the
    kept rows carry the problem's own prompt; a run without the hint is not served from it."""
    teacher = HintReadingTeacher()
    manifest = on_teacher_answers(
        tmp_path, tiny_causal, monkeypatch, teacher, "teacher", teacher_hint=True
    )
    made = manifest["distill"]["teacher_data"]
    assert made["candidates"] == 4 and made["kept"] == 4 and not made["reused"]
    problems = tasks.mbpp_problems("train")[:4]
    shown = zip(problems, teacher.prompts, strict=True)
    assert all(p.reference.strip() in prompt for p, prompt in shown)
    rows = [json.loads(line) for line in Path(made["rows"]).read_text().splitlines()]
    assert [r["prompt"] for r in rows] == [p.prompt for p in problems]
    assert all(r["completion"].endswith("TEACHERS_OWN = True") for r in rows)
    with pytest.raises(HonedError, match="none of the teacher's 4 answers passed"):
        on_teacher_answers(tmp_path, tiny_causal, monkeypatch, HintReadingTeacher(), "teacher")


def test_a_teacher_hint_needs_teacher_answers_on_code_data(tiny_causal, arith_data, tmp_path):
    with pytest.raises(HonedError, match="--teacher-hint shapes the teacher's answers"):
        distill(config(tmp_path, tiny_causal, "mbpp", student=str(tiny_causal), teacher_hint=True))
    text = config(tmp_path, tiny_causal, arith_data, student=str(tiny_causal), mode="sequence")
    with pytest.raises(HonedError, match="--teacher-hint shows the teacher"):
        distill(text.model_copy(update={"teacher_hint": True}))
    assert not (tmp_path / "student").exists()
