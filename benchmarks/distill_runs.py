"""Distillation on real models: teacher, student before, student fine-tuned plainly and
student distilled, all scored the same way, with parameter counts and decode speed.

Pairs (issue 6):
- logits: Qwen2.5-Coder-1.5B-Instruct -> Qwen2.5-Coder-0.5B-Instruct (shared tokenizer);
- sequence: Qwen2.5-Coder-0.5B-Instruct -> SmolLM2-135M-Instruct (teacher answers MBPP
  train, the passing ones are the student's data).
Every model is scored on MBPP test, and with `--tasks mbpp,humaneval` on HumanEval too
(pass@1, greedy, chat prompting: each model through its own chat template, the format the
students are trained in) through llama.cpp: trained students are exported to GGUF Q8_0
first, the shared models are used as their GGUF files (Q4_K_M for the Qwen teachers). The
distilled student is also exported to the teacher file's own type (`--speed-format`) and
benched, so its speed ratio compares like with like.
The plain fine-tune uses the same rows, steps and learning rate as the distillation, so
"gap closed" = (distilled - plain) / (teacher - plain). Logits mode can also distill on the
teacher's own passing answers to the same train problems (`--targets teacher`: sequence-level
plus logit KD; `--targets both`: on the references and those answers), against the same
plain fine-tune on MBPP's references; `--extra-problems FILE` adds teacher-written problems
(teacher_problems.py) to the distilled student's rows, not the plain one's; `--alpha`,
`--temperature`, `--kd-loss` and `--on-policy` make other variants of the loss, and
`--distill-learning-rate` trains the distilled student alone at another learning rate;
`--teacher-backend llama.cpp` scores the teacher's top-k on its GGUF's own weights (less
memory, about 1.3x faster on a 2-core CPU: teacher_scoring.py) instead of dequantized;
`--tuned-teacher` first fine-tunes the teacher on the students' rows, steps and learning rate
(the task-specific recipe: the teacher knows MBPP's conventions before it teaches) and
measures the gap to that teacher, scored beside the teacher as shipped; a
`--method` other than the mode's default, `--max-samples` other than all 374 train rows,
`--max-steps` other than the standard 64, a `--learning-rate` or `--keep-best-every N` (each
student ends at its best step by validation loss, evaluated every N steps) trains both
students that way (the plain fine-tune gets its own folder: `plain-full`,
`plain-rows64-steps16`, `plain-steps192`, `plain-best8`; teacher answers drawn the same way
are copied from another variant rather than generated again). Each step's output is kept
under runs/distill-bench/ and reused when run again (teacher, student before and the plain
fine-tune are shared by every logits run trained the same way; a folder trained with other
rows, steps, batch, dtype, learning rate or best-step setting stops the run rather than
being reused), so the script can be stopped (Ctrl-C, or SIGTERM to its process group:
the running step checkpoints or keeps its samples) and run again to resume, the step left
unfinished included; wall times of every step are recorded (in MODE/wall_s*.json, kept
across resumes, an interrupted step's tries added up).

    .venv/bin/python benchmarks/distill_runs.py logits --max-samples 64 --max-steps 16 --limit 50
    .venv/bin/python benchmarks/distill_runs.py sequence --max-samples 374 --max-steps 64 \
        --limit 150 --dtype bfloat16
    .venv/bin/python benchmarks/distill_runs.py logits --max-samples 374 --max-steps 64 \
        --limit 150 --dtype bfloat16 [--targets teacher|both] [--candidates 4 \
        --teacher-temperature 0.8] \
        [--tasks mbpp,humaneval] [--alpha 0.9 --temperature 2 | --on-policy 0.5] [--method full] \
        [--keep-best-every 8 --eval-rows 90] [--tuned-teacher]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from distill_md import (  # noqa: E402
    DEFAULT_ANSWERS,
    DEFAULT_METHOD,
    SHIPPED,
    STANDARD_ROWS,
    STANDARD_STEPS,
    TRAINED_PART,
    answers_given,
    heading,
    kd_given,
    markdown,
    targets_given,
    trained_given,
)
from local_models import ensure_local  # noqa: E402
from paired import solved_problems  # noqa: E402
from results_md import provenance, replace_section  # noqa: E402

from honed.artifacts import read_manifest, tmp_dir_for  # noqa: E402
from honed.config import DistillConfig  # noqa: E402
from honed.distill.sequence import eval_config, reusable  # noqa: E402
from honed.evaluate.journal import SETTINGS  # noqa: E402

WORK = Path("runs/distill-bench")
TUNED = "tuned-teacher"  # the variant part of `--tuned-teacher`
TEACHER_FORMAT = "gguf-q4_k_m"  # the shared teacher files' type; a tuned teacher's export
PAIRS = {
    "logits": ("qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-0.5b-instruct"),
    "sequence": ("qwen2.5-coder-0.5b-instruct", "smollm2-135m-instruct"),
}


def honed(*args: str) -> float:
    """Run one honed command; its wall time in seconds. While it runs, Ctrl-C and SIGTERM
    are left to it (they reach the whole process group: `kill -TERM -- -PGID`): a training
    run checkpoints, an eval keeps its samples, and then this script stops too, keeping the
    step's time so far (the next run resumes the step and adds to it)."""
    start = time.perf_counter()
    with stops_left_to_child():
        code = subprocess.call([str(Path(sys.executable).parent / "honed"), *args])
    if code:
        raise SystemExit(f"honed {args[0]} exited with status {code}: run again to resume")
    return time.perf_counter() - start


@contextlib.contextmanager
def stops_left_to_child() -> Iterator[None]:
    """Let SIGINT and SIGTERM do nothing here meanwhile (subprocess would otherwise kill the
    child 0.25 s after a Ctrl-C, in the middle of its checkpoint). A Python handler, not
    SIG_IGN, which the child would inherit."""
    saved = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


class WallTimes(dict):
    """Wall time of each step in seconds, kept in a file so that a resumed run still reports
    the steps it reused. Steps shared with the mode's other runs (teacher, student before,
    and the plain fine-tune of runs trained the same way: same output folders) take their
    time from those runs' files."""

    def __init__(self, path: Path, trained: str = "") -> None:
        super().__init__(_load(path))
        self.path = path
        self.elsewhere: dict[str, float] = {}
        tuned = tuned_teacher(path.stem)
        for other in sorted(path.parent.glob("wall_s*.json")):
            same = trained_of(other.stem.removeprefix("wall_s")) == trained
            if other != path:
                lent = as_named_here(_load(other), tuned_teacher(other.stem), tuned)
                self.elsewhere.update({k: v for k, v in lent.items() if lends(k, same, tuned)})

    def __setitem__(self, key: str, value: float) -> None:
        super().__setitem__(key, value)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self, indent=2))


def trained_of(variant: str) -> str:
    """The leading parts of a variant suffix that say how both students were trained
    ('' for the standard run; '-full', '-steps192', ...)."""
    parts = itertools.takewhile(TRAINED_PART.match, variant.split("-")[1:])
    return "".join(f"-{part}" for part in parts)


def as_named_here(times: dict[str, float], tuned_there: bool, tuned: bool) -> dict[str, float]:
    """Another run's step times under this run's names: the shipped teacher is `teacher` in a
    run without `--tuned-teacher` and SHIPPED in one with it; a tuned teacher's steps mean
    nothing to a run without one."""
    if tuned_there == tuned:
        return times
    if tuned:
        return {k.replace("teacher", SHIPPED): v for k, v in times.items()}
    return {
        k.replace(SHIPPED, "teacher"): v
        for k, v in times.items()
        if "teacher" not in k or SHIPPED in k
    }


def lends(step: str, same_training: bool, tuned: bool) -> bool:
    """Whether another run's wall time of `step` holds for this run: the plain fine-tune's
    steps where both students trained alike, a tuned teacher's where the teacher did too
    (another run's `teacher` steps, renamed to SHIPPED for a tuned run, never clash)."""
    if "plain" in step or ("teacher" in step and SHIPPED not in step and tuned):
        return same_training
    return True


def tuned_teacher(name: str) -> bool:
    """Whether a variant's folder or file name is of a run with a fine-tuned teacher."""
    return f"-{TUNED}" in name


def _load(path: Path) -> dict[str, float]:
    return json.loads(path.read_text()) if path.is_file() else {}


def step(name: str, out: Path, *args: str, times: WallTimes) -> Path:
    """A honed command whose output directory is reused when it already exists (its wall
    time then from this run's file, or another run's for a step they share); one left
    unfinished is resumed, its wall time adding to the interrupted tries'."""
    if not any((out / f).is_file() for f in ("manifest.json", "summary.json", "bench.json")):
        before = times.get(name, 0.0)  # the interrupted tries' time (their work is resumed)
        start = time.perf_counter()
        try:
            honed(*args, *resumed(out, args[0]))
        finally:
            times[name] = before + time.perf_counter() - start
    elif name not in times and name in times.elsewhere and "distill" not in name:
        times[name] = times.elsewhere[name]  # a shared step; a distilled student never is
    return out


def resumed(out: Path, command: str) -> list[str]:
    """`--resume` for a training run or an eval that an earlier run of this script left
    unfinished in OUT.tmp (stopped by SIGTERM, Ctrl-C or the end of a session): training goes
    on from its latest checkpoint, an eval generates only the samples it lacks."""
    work = tmp_dir_for(out)
    if command in ("finetune", "distill") and work.is_dir():
        return ["--resume"]
    return ["--resume"] if command == "eval" and (work / SETTINGS).is_file() else []


TRAINED_WITH = ("method", "max_samples", "max_steps", "batch_size", "dtype", "learning_rate")


def check_trained(out: Path, args: argparse.Namespace, rate: float | None = None) -> None:
    """Stop before reusing a student trained with other settings than these (`rate`: its
    learning rate where not --learning-rate). (A student trained on teacher answers records
    their file as its data and no max_samples: the teacher answered max_samples problems,
    which its summary holds.)"""
    manifest = out / "manifest.json"
    config = json.loads(manifest.read_text()).get("config", {}) if manifest.is_file() else {}
    if config.get("data") != "mbpp":
        config.pop("max_samples", None)
    expected = {key: getattr(args, key) for key in TRAINED_WITH}
    expected["learning_rate"] = rate or args.learning_rate
    expected["keep_best"] = bool(args.keep_best_every)
    if args.keep_best_every:
        expected["eval_steps"] = args.keep_best_every
    for key, value in expected.items():
        if key in config and config[key] != value:
            raise SystemExit(
                f"{out} was trained with {key} {config[key]}, not {value}: "
                "pass another --work or delete that folder"
            )


def training_args(
    args: argparse.Namespace, data: list[str] | None = None, rate: float | None = None
) -> list[str]:
    """`honed finetune`/`distill` options both students share; `data` replaces MBPP's train
    split (`--data mbpp --max-samples N`), `rate` the learning rate."""
    rate = rate or args.learning_rate
    return [
        *(data or ["--data", "mbpp", "--max-samples", str(args.max_samples)]),
        "--method",
        args.method,
        "--max-steps",
        str(args.max_steps),
        *(["--learning-rate", str(rate)] if rate else []),
        "--batch-size",
        str(args.batch_size),
        "--max-length",
        "512",
        "--max-eval-samples",
        str(args.eval_rows),
        "--overwrite",
        "--samples",
        "0",
        "--dtype",
        args.dtype,
        *(keep_best(args.keep_best_every) if args.keep_best_every else []),
    ]


def keep_best(every: int) -> list[str]:
    return ["--keep-best", "--eval-steps", str(every)]


def extra_data(args: argparse.Namespace, where: Path) -> list[str]:
    """`--extra-problems`: MBPP's 374 train references and the teacher-written problems'
    solutions as one jsonl, validated on MBPP's validation split as the plain fine-tune is;
    the `honed distill` data options that train on it."""
    from honed.data.builtin import load_mbpp, mbpp_row
    from honed.data.sources import BadRows
    from honed.evaluate.report import write_jsonl

    splits = load_mbpp(BadRows(False))
    extra = [json.loads(line) for line in args.extra_problems.read_text().splitlines() if line]
    train = [*splits["train"], *map(mbpp_row, extra)]
    pair = ("prompt", "completion")
    where.mkdir(parents=True, exist_ok=True)
    write_jsonl(where / "train.jsonl", [{k: row[k] for k in pair} for row in train])
    write_jsonl(where / "validation.jsonl", [{k: r[k] for k in pair} for r in splits["validation"]])
    return ["--data", str(where / "train.jsonl"), "--eval-data", str(where / "validation.jsonl")]


def teacher_answers(args: argparse.Namespace) -> list[str]:
    """How the teacher answers the train problems (sequence mode, or logits on its answers)."""
    targets = ["--targets", args.targets] if args.targets != "data" else []
    return [
        *targets,
        *(["--teacher-hint"] if args.teacher_hint else []),
        "--candidates",
        str(args.candidates),
        "--teacher-temperature",
        str(args.teacher_temperature),
    ]


def kd_args(args: argparse.Namespace) -> list[str]:
    """The loss settings given on the command line, as `honed distill` options."""
    given = kd_given(vars(args))
    return [text for flag, value in given for text in (f"--{flag.replace('_', '-')}", str(value))]


def teacher_scorer(args: argparse.Namespace) -> list[str]:
    """`honed distill` options for what scores the teacher's top-k."""
    if args.teacher_backend == "llama.cpp":
        return ["--teacher-backend", "llama.cpp"]
    return ["--teacher-dtype", args.dtype]


def extra_rows(path: Path | None, max_samples: int) -> int | None:
    """How many teacher-written problems a `--extra-problems` file holds (None: no file).
    They join all 374 references: the plain fine-tune draws fewer rows at random, which
    those would not match."""
    if path is None:
        return None
    if max_samples != STANDARD_ROWS:
        raise SystemExit(
            f"--extra-problems trains on all {STANDARD_ROWS} train rows: drop --max-samples"
        )
    if not path.is_file():
        raise SystemExit(f"{path} not found: write it with benchmarks/teacher_problems.py")
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def trained_as(args: argparse.Namespace) -> str:
    """'' for the standard run's training (the mode's method, 64 steps, the stage's learning
    rate), else what differs: both students trained that way, so the plain fine-tune gets its
    own folder too ('plain-full', 'plain-steps192')."""
    return "".join(f"-{part}" for part, _ in trained_given(args.mode, vars(args)))


def variant_of(args: argparse.Namespace) -> str:
    """'' for the standard run of a mode; a suffix naming what differs from it (how both
    students were trained, training targets, how the teacher answers, loss settings), so each
    variant keeps its own distilled student."""
    targets = targets_given(args.mode, vars(args))
    parts = [f"{targets}-targets"] if targets else []
    answers = answers_given(args.mode, vars(args))
    parts += [f"candidates{answers[0]}-teacher-temperature{answers[1]}"] if answers else []
    parts += ["hinted"] if args.teacher_hint else []
    parts += [f"extra{args.extra_rows}"] if args.extra_problems else []
    parts += [TUNED] if args.tuned_teacher else []
    parts += ["llamacpp-scored"] if args.teacher_backend == "llama.cpp" else []
    rate = args.distill_learning_rate
    parts += [f"distilledlr{rate:.10f}".rstrip("0")] if rate else []
    parts += [f"{flag.replace('_', '-')}{value}" for flag, value in kd_given(vars(args))]
    return trained_as(args) + "".join(f"-{part}" for part in parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=sorted(PAIRS))
    parser.add_argument(
        "--max-samples", type=int, default=STANDARD_ROWS, help="MBPP train rows used (all 374)"
    )
    parser.add_argument("--max-steps", type=int, default=STANDARD_STEPS)
    parser.add_argument("--learning-rate", type=float, default=None, help="default: the stage's")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--method", default=None, help="default: lora (logits), full (sequence)")
    parser.add_argument(
        "--dtype",
        default="auto",
        help="training dtype of student and teacher (bfloat16: faster steps on a CPU that "
        "computes bf16 natively)",
    )
    parser.add_argument(
        "--targets",
        choices=("data", "teacher", "both"),
        default="data",
        help="logits mode: KD on MBPP's reference answers, on the teacher's passing ones, or on "
        "both (sequence mode: the teacher's passing ones, or with 'both' the references too)",
    )
    parser.add_argument(
        "--candidates",
        type=int,
        help="teacher answers per prompt (teacher targets; default 1 in logits mode, 2 in "
        "sequence mode)",
    )
    parser.add_argument(
        "--teacher-temperature",
        type=float,
        help="of the teacher's answers (default 0: greedy in logits mode, 0.8 in sequence mode)",
    )
    parser.add_argument(
        "--teacher-hint",
        action="store_true",
        help="the teacher is shown each train problem's reference answer and writes its own "
        "(sequence mode, or logits mode with --targets teacher or both)",
    )
    parser.add_argument(
        "--teacher-backend",
        choices=["transformers", "llama.cpp"],
        help="logits mode: what scores the teacher's top-k (default transformers, the GGUF "
        "dequantized to --dtype; llama.cpp: the file's own weights, less memory, faster here)",
    )
    parser.add_argument("--alpha", type=float, help="KD weight (default: the stage's)")
    parser.add_argument("--temperature", type=float, help="KD temperature (default: the stage's)")
    parser.add_argument("--kd-loss", help="forward_kl, reverse_kl or jsd (default: the stage's)")
    parser.add_argument(
        "--on-policy", type=float, help="share of on-policy batches (default: the stage's)"
    )
    parser.add_argument(
        "--distill-learning-rate",
        type=float,
        help="the distilled student's learning rate where not the plain one's (with alpha "
        "0.5, about 2x keeps the references' cross-entropy steps as large as plain "
        "fine-tuning's: Adam's steps are as large whatever the loss's scale)",
    )
    parser.add_argument(
        "--extra-problems",
        type=Path,
        help="the distilled student also trains on these teacher-written problems "
        "(teacher_problems.py's problems.jsonl); the plain fine-tune does not",
    )
    parser.add_argument(
        "--tuned-teacher",
        action="store_true",
        help="fine-tune the teacher first, as the students are trained (same rows, steps, "
        "learning rate, method), and distill from it; the gap is measured to it",
    )
    parser.add_argument("--limit", type=int, default=150, help="MBPP test problems scored")
    parser.add_argument(
        "--tasks",
        type=lambda text: text.split(","),
        default=["mbpp"],
        help="tasks every model is scored on, comma-separated: mbpp, humaneval (whole)",
    )
    parser.add_argument("--eval-rows", type=int, default=16, help="validation rows (eval loss)")
    parser.add_argument(
        "--keep-best-every",
        type=int,
        metavar="N",
        help="both students end at their best step by validation loss, evaluated every N steps "
        "(with --eval-rows 90: all of MBPP's validation rows)",
    )
    parser.add_argument("--work", type=Path, default=WORK, help="where every step's output goes")
    parser.add_argument("--bench-prompts", type=int, default=8, help="bench: prompts, 2 runs")
    parser.add_argument(
        "--speed-format",
        default=TEACHER_FORMAT,
        help="also bench the distilled student in this format, the teacher file's own GGUF "
        "type, so the speed ratio compares like with like ('' to skip)",
    )
    args = parser.parse_args()
    args.method = args.method or DEFAULT_METHOD[args.mode]
    args.extra_rows = extra_rows(args.extra_problems, args.max_samples)
    if args.teacher_backend == "llama.cpp" and (args.mode != "logits" or args.tuned_teacher):
        raise SystemExit("--teacher-backend llama.cpp scores a GGUF teacher in logits mode")
    if args.teacher_hint and args.mode == "logits" and args.targets == "data":
        raise SystemExit("--teacher-hint shapes the teacher's answers: add --targets teacher")
    candidates, temperature = DEFAULT_ANSWERS[args.mode]
    args.candidates = args.candidates or candidates
    if args.teacher_temperature is None:
        args.teacher_temperature = temperature
    teacher, student = PAIRS[args.mode]
    ensure_local(teacher, student)
    w = args.work / args.mode
    variant = variant_of(args)
    times = WallTimes(w / f"wall_s{variant}.json", trained_as(args))
    plain_dir = w / f"plain{trained_as(args)}"
    tuned_dir = w / f"teacher-tuned{trained_as(args)}"
    for out in (plain_dir, tuned_dir):
        check_trained(out, args)
    check_trained(w / f"distilled{variant}", args, args.distill_learning_rate)
    plain = step(
        "plain fine-tune",
        plain_dir,
        "finetune",
        "--model",
        student,
        "--output",
        str(plain_dir),
        *training_args(args),
        times=times,
    )
    models = {"teacher": teacher, "student before": student}
    if args.tuned_teacher:
        teacher = str(fine_tune_teacher(teacher, tuned_dir, args, times))
        models = {
            "teacher": export("teacher", Path(teacher), TEACHER_FORMAT, times),
            SHIPPED: models["teacher"],
            "student before": student,
        }
    teacher_targets = args.mode == "sequence" or args.targets != "data"
    if teacher_targets:
        seed_teacher_data(w, w / f"distilled{variant}-teacher-data", teacher, args)
    data = extra_data(args, w / f"distilled{variant}-data") if args.extra_problems else None
    distilled = step(
        "distill",
        w / f"distilled{variant}",
        "distill",
        "--teacher",
        teacher,
        "--student",
        student,
        "--mode",
        args.mode,
        "--output",
        str(w / f"distilled{variant}"),
        *training_args(args, data, args.distill_learning_rate),
        *(teacher_answers(args) if teacher_targets else []),
        *(teacher_scorer(args) if args.mode == "logits" else []),
        *kd_args(args),
        times=times,
    )
    for name, path in (("student plain fine-tune", plain), ("student distilled", distilled)):
        models[name] = export(name, path, "gguf-q8_0", times)
    speed_only = {}  # benched, not scored: the student in the teacher file's own GGUF type
    if args.speed_format:
        name = f"student distilled ({args.speed_format})"
        speed_only[name] = export(name, distilled, args.speed_format, times)
    scores, solved = score(args, w, variant, models, times)
    bench = w / "bench"
    forget_stale_bench(bench, [*models.values(), *speed_only.values()])
    step(
        "bench",
        bench,
        "bench",
        *models.values(),
        *speed_only.values(),
        "--n-prompts",
        str(args.bench_prompts),
        "--runs",
        "2",
        "--max-new-tokens",
        "64",
        "--output",
        str(bench),
        "--overwrite",
        times=times,
    )
    honed("report", str(w), "--output", str(w / "report"), "--title", f"distill ({args.mode})")
    rows = {r["model"]: r for r in json.loads((bench / "bench.json").read_text())["results"]}
    record = {
        "benchmark": "distill_runs",
        "mode": args.mode,
        "teacher": teacher,
        "student": student,
        **provenance(("llama-cpp-python",)),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "pass@1": scores,
        "solved": solved,
        "wall_s": dict(times),
        "kept_step": kept_steps({"student plain fine-tune": plain, "student distilled": distilled}),
        "bench": {
            name: {k: rows.get(ref, {}).get(k) for k in ("parameters", "decode_tok_s")}
            for name, ref in {**models, **speed_only}.items()
        },
    }
    print(json.dumps(record, indent=2))
    (HERE / "results").mkdir(exist_ok=True)
    name = f"distill_{args.mode}{variant}"
    (HERE / "results" / f"{name}.json").write_text(json.dumps(record, indent=2))
    if args.work == WORK:  # a trial elsewhere does not touch RESULTS.md
        replace_section(heading(record), markdown(record))


def fine_tune_teacher(teacher: str, out: Path, args: argparse.Namespace, times: WallTimes) -> Path:
    """`--tuned-teacher`: the teacher trained on the students' data, rows and steps, with
    gradient checkpointing (the same steps; without it the 1.5B's activations at 8 rows of
    512 tokens passed 24 GB, where the kernel killed it) and a checkpoint every 16 steps to
    resume from."""
    return step(
        "teacher fine-tune",
        out,
        "finetune",
        "--model",
        teacher,
        "--output",
        str(out),
        *training_args(args),
        "--gradient-checkpointing",
        "--save-steps",
        "16",
        times=times,
    )


def score(
    args: argparse.Namespace, w: Path, variant: str, models: dict[str, str], times: WallTimes
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, list[str]]]]:
    """pass@1 and solved problems of every model on every task, keyed by task then model.
    MBPP's eval folders keep their first names (eval-MODEL); other tasks' carry the task.
    `--limit` applies to MBPP; HumanEval is scored whole (164 problems)."""
    scores: dict[str, dict[str, float]] = {}
    solved: dict[str, dict[str, list[str]]] = {}
    suffix = {"student distilled": variant, "student plain fine-tune": trained_as(args)}
    suffix["teacher"] = f"-tuned{trained_as(args)}" if args.tuned_teacher else ""
    folder = {SHIPPED: "teacher"}  # the shipped teacher's usual folder
    for task in args.tasks:
        limit = (args.limit or None) if task == "mbpp" else None
        scores[task], solved[task] = {}, {}
        # the student before last: the gap closed needs only the other three
        for name, ref in sorted(models.items(), key=lambda item: item[0] == "student before"):
            own = suffix.get(name, "")
            prefix = "eval" if task == "mbpp" else f"eval-{task}"
            out = w / f"{prefix}-{folder.get(name, name.replace(' ', '-'))}{own}"
            evaluate(
                f"eval {name}" + ("" if task == "mbpp" else f" ({task})"),
                out,
                ref,
                task,
                limit,
                times,
            )
            scores[task][name] = json.loads((out / "summary.json").read_text())["pass@k"]["pass@1"]
            solved[task][name] = sorted(solved_problems(out / "samples.jsonl"))
    return scores, solved


def evaluate(
    name: str, out: Path, ref: str, task: str, limit: int | None, times: WallTimes
) -> None:
    """`honed eval` greedy with chat prompting, one prompt at a time (a batch can turn a
    near-tie: every recorded score was drawn this way), reused unless scored on another
    limit."""
    summary = out / "summary.json"
    if summary.is_file() and json.loads(summary.read_text())["params"]["limit"] != limit:
        summary.unlink()  # scored on another number of problems: score again
    extra = ["--limit", str(limit)] if limit else []
    step(
        name,
        out,
        "eval",
        ref,
        "--task",
        task,
        "--prompting",
        "chat",
        "--batch-size",  # one prompt at a time, as every recorded score
        "1",
        "--output",
        str(out),
        "--overwrite",
        *extra,
        times=times,
    )


def seed_teacher_data(w: Path, target: Path, teacher: str, args: argparse.Namespace) -> None:
    """Copy another variant's teacher answers to `target` when drawn the same way (honed's
    own test, `sequence.reusable`, on the teacher run `honed distill` would make): they do not
    depend on how the student trains, so only the training runs again."""
    cfg = DistillConfig(teacher=teacher, data="mbpp", teacher_hint=args.teacher_hint,
                        candidates=args.candidates, teacher_temperature=args.teacher_temperature,
                        max_samples=args.max_samples)  # fmt: skip
    for other in [] if target.exists() else sorted(w.glob("distilled*-teacher-data")):
        if reusable(other, eval_config(cfg, other)):
            print(f"teacher answers: copied from {other}", flush=True)
            shutil.copytree(other, target)
            return


def kept_steps(trained: dict[str, Path]) -> dict[str, int]:
    """The step each student ended at where it kept its best by validation loss."""
    kept = {}
    for name, path in trained.items():
        metrics = read_manifest(path).get("metrics", {})
        if metrics.get("best_step") is not None:
            kept[name] = metrics["best_step"]
    return kept


def forget_stale_bench(bench: Path, refs: list[str]) -> None:
    """A bench.json of another set of models is not reused."""
    found = bench / "bench.json"
    if found.is_file():
        benched = {r["model"] for r in json.loads(found.read_text())["results"]}
        if benched != set(refs):
            found.unlink()


def export(name: str, path: Path, method: str, times: WallTimes) -> str:
    """A trained student quantized with `honed quantize` (reused when already there)."""
    out = path.with_name(f"{path.name}-{method.removeprefix('gguf-')}")
    args = ("quantize", str(path), "--method", method, "--output", str(out), "--overwrite")
    return str(step(f"export {name}", out, *args, times=times))


if __name__ == "__main__":
    main()
