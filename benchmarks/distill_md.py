"""The RESULTS.md section of a `distill_runs.py` run: teacher, student before, plain fine-tune
and distilled student side by side (pass@1 on each task scored, parameters, decode speed),
and on each task how much of the teacher's lead over plain fine-tuning distillation closed."""

from __future__ import annotations

import re

from paired import paired

TASK_NAMES = {"mbpp": "MBPP test", "humaneval": "HumanEval"}
SHIPPED = "teacher before fine-tune"  # distill_runs.py --tuned-teacher: the teacher as shipped


DEFAULT_METHOD = {"logits": "lora", "sequence": "full"}  # distill_runs.py's --method default
TARGET_WORDS = {"teacher": "teacher answers", "both": "references and teacher answers"}
KD_FLAGS = ("alpha", "temperature", "kd_loss", "on_policy")  # distill_runs.py passes them on
# how the teacher answers the train problems, by default: once greedily in logits mode (every
# logits run on teacher answers so far), twice at 0.8 in sequence mode (the stage's default)
DEFAULT_ANSWERS = {"logits": (1, 0.0), "sequence": (2, 0.8)}


def kd_given(settings: dict) -> list[tuple[str, object]]:
    """(flag, value) of each loss setting given, in KD_FLAGS order; unset ones are left out."""
    return [(flag, settings[flag]) for flag in KD_FLAGS if settings.get(flag) is not None]


STANDARD_STEPS = 64  # the training steps of every run recorded so far; other counts are named
STANDARD_ROWS = 374  # MBPP's whole train split; runs on fewer rows are named
TRAINED_PART = re.compile(r"(lora|qlora|full|rows\d+|steps\d+|lr[\d.]+|best\d+)$")


def trained_given(mode: str, settings: dict) -> list[tuple[str, str]]:
    """How both students were trained, where not as the standard run (fine-tune method,
    train rows, steps, learning rate, the best of evaluations every N steps): (folder suffix
    part, heading words) each. A part holds no '-', so that a folder suffix splits on it."""
    method = method_given(mode, settings)
    rows, steps = settings.get("max_samples"), settings.get("max_steps")
    rate, best = settings.get("learning_rate"), settings.get("keep_best_every")
    given = [(method, f"{method} fine-tune")] if method else []
    given += [(f"rows{rows}", f"{rows} train rows")] if rows not in (None, STANDARD_ROWS) else []
    given += [(f"steps{steps}", f"{steps} steps")] if steps not in (None, STANDARD_STEPS) else []
    given += [(f"lr{rate:.10f}".rstrip("0"), f"learning rate {rate:g}")] if rate else []
    given += [(f"best{best}", f"best step of every {best}")] if best else []
    return given


def method_given(mode: str, settings: dict) -> str | None:
    """How both students were trained (lora, full, qlora) when not the mode's default."""
    method = settings.get("method")
    return method if method not in (None, DEFAULT_METHOD[mode]) else None


def targets_given(mode: str, settings: dict) -> str | None:
    """What the student trained on when not the mode's default: logits mode trains on the
    references ('data'), sequence mode on the teacher's answers ('data' reads as that)."""
    targets = settings.get("targets") or "data"
    default = ("data",) if mode == "logits" else ("data", "teacher")
    return None if targets in default else targets


def answers_given(mode: str, settings: dict) -> tuple[int, float] | None:
    """(candidates, teacher temperature) when the student trains on teacher answers drawn
    otherwise than the mode's default; records that predate the settings read as default."""
    if mode == "logits" and (settings.get("targets") or "data") == "data":
        return None
    default = DEFAULT_ANSWERS[mode]
    given = (
        settings.get("candidates") or default[0],
        settings.get("teacher_temperature", default[1]),
    )
    return None if given == default or given[1] is None else given


def heading(record: dict) -> str:
    """One section per mode, and one per variant: a fine-tune method other than the mode's
    default, other steps or learning rate, training targets other than the mode's, teacher
    answers drawn otherwise, teacher-written problems added, a teacher fine-tuned first, the
    teacher scored by llama.cpp, loss settings other than the stage's, the distilled student
    trained at a learning rate of its own."""
    settings = record["settings"]
    targets = targets_given(record["mode"], settings)
    extras = [words for _, words in trained_given(record["mode"], settings)]
    extras += [TARGET_WORDS[targets]] if targets else []
    answers = answers_given(record["mode"], settings)
    extras += [f"{answers[0]} sampled at temperature {answers[1]}"] if answers else []
    extras += ["teacher shown the references"] if settings.get("teacher_hint") else []
    extras += [f"{n} teacher-written problems added"] if (n := settings.get("extra_rows")) else []
    extras += ["teacher fine-tuned first"] if settings.get("tuned_teacher") else []
    extras += (
        ["teacher scored by llama.cpp"] if settings.get("teacher_backend") == "llama.cpp" else []
    )
    extras += [f"{flag.replace('_', ' ')} {value}" for flag, value in kd_given(settings)]
    rate = settings.get("distill_learning_rate")
    extras += [f"distilled at learning rate {rate:g}"] if rate else []
    return f"## Distillation ({', '.join([record['mode'] + ' mode', *extras])})"


def by_task(record: dict, key: str) -> dict[str, dict]:
    """`record[key]` per task; records written before HumanEval was scored hold MBPP only."""
    found = record.get(key, {})
    return found if "teacher" not in found else {"mbpp": found}


def table(record: dict) -> list[str]:
    """A row per model: pass@1 per task, parameters (M), decode tok/s and x teacher speed."""
    scores, b = by_task(record, "pass@1"), record["bench"]
    tasks = list(scores)
    teacher_speed = (b["teacher"].get("decode_tok_s") or {}).get("median")
    rows = [
        "| model | "
        + " | ".join(f"{TASK_NAMES.get(t, t)} pass@1" for t in tasks)
        + " | parameters (M) | decode tok/s | x teacher speed |",
        "|---|" + "---|" * (len(tasks) + 3),
    ]
    for name in b:
        speed = (b[name].get("decode_tok_s") or {}).get("median")
        params = b[name].get("parameters")
        ratio = f"{speed / teacher_speed:.2f}" if speed and teacher_speed else "-"
        cells = [f"{scores[t][name]:.4f}" if name in scores[t] else "not scored" for t in tasks]
        rows.append(
            f"| {name} | {' | '.join(cells)} | {params / 1e6 if params else 0:.0f} "
            f"| {speed or 0:.1f} | {ratio} |"
        )
    return rows


def verdict(task: str, scores: dict[str, float], solved: dict[str, list] | None) -> str:
    """Gap closed over plain fine-tuning on one task, with the paired problem-by-problem split."""
    gap = scores["teacher"] - scores["student plain fine-tune"]
    gain = scores["student distilled"] - scores["student plain fine-tune"]
    text = f"{TASK_NAMES.get(task, task)}: gap closed over plain fine-tuning: " + (
        f"{gain / gap:.0%} (target 30%)" if gap > 0 else "n/a (no gap)"
    )
    if (shipped := scores.get(SHIPPED)) is not None and shipped > scores["student plain fine-tune"]:
        lead = shipped - scores["student plain fine-tune"]
        text += f"; of the lead of the teacher before its fine-tune, {gain / lead:.0%}"
    if solved:
        lost, gained, p = paired(solved["student plain fine-tune"], solved["student distilled"])
        text += (
            f". Problem by problem, the distilled student solves {gained} that the plain one "
            f"does not and misses {lost} that it solves (exact McNemar p = {p:.2f})"
        )
    return text


def on_machine(record: dict) -> str:
    """' on CPU, N cores' where the record names its machine (older records do not)."""
    machine = record.get("machine")
    return f" on {machine['cpu']}, {machine['cores']} cores" if machine else ""


def markdown(record: dict) -> str:
    """The whole section: heading, command and wall times, table, a verdict per task."""
    solved = by_task(record, "solved")
    verdicts = [
        verdict(task, scores, solved.get(task))
        for task, scores in by_task(record, "pass@1").items()
    ]
    times = ", ".join(f"{k} {v / 60:.1f} min" for k, v in record["wall_s"].items())
    if kept := record.get("kept_step"):
        steps = ", ".join(f"{name} {step}" for name, step in kept.items())
        times += f". Steps kept (lowest validation loss): {steps}"
    return "\n".join(
        [
            heading(record),
            "",
            f"Measured {record['date']}{on_machine(record)}; `{record['command']}`; "
            f"{record['teacher']} -> "
            f"{record['student']}, settings {record['settings']}. Wall times: {times}.",
            "",
            *table(record),
            "",
            *[line for v in verdicts for line in (v, "")],
        ]
    )
