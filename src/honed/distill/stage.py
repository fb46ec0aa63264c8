"""`honed distill`: build or pick the student, then train it against the teacher.

The student before distillation is written as an artifact of its own (`OUTPUT-init`, for a
student built from a config or pruned from the teacher) so that `honed eval`, `bench` and
`report` can put teacher, student before and student after side by side. Training is the
fine-tune stage (checkpoints, resume, Ctrl-C, NaN stop, metrics, loss plot, samples,
accelerate) with the distillation loss (logits mode, on the data's answers, with
`--targets teacher` on the teacher's own passing ones, with `--targets both` on both) or on
teacher-written data (sequence mode, see sequence.py; `--targets both` adds the data's own
answers).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from honed import artifacts
from honed.config import DistillConfig, FinetuneConfig
from honed.data import PreparedData
from honed.distill import student as students
from honed.errors import HonedError
from honed.models.load import cache_root, load_tokenizer
from honed.models.resolve import ModelSource, resolve
from honed.train.finetune import RunResult, StageHooks, finetune

log = logging.getLogger("honed")


def slug(text: str) -> str:
    """A path-friendly short name of a model reference."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(text.rstrip("/")).name).strip("-") or "x"


def default_output(cfg: DistillConfig) -> Path:
    """runs/distill-<teacher>-<mode>."""
    return Path("runs") / f"distill-{slug(cfg.teacher or 'teacher')}-{cfg.mode}"


def student_choice(cfg: DistillConfig) -> tuple[str, str]:
    """(kind, spec) of the one student option given."""
    given = {
        "pretrained": cfg.student or cfg.model,
        "config": cfg.student_config,
        "pruned": cfg.student_from_teacher,
    }
    chosen = [(k, v) for k, v in given.items() if v]
    if len(chosen) != 1:
        raise HonedError(
            "give exactly one of --student REF, --student-config SPEC or "
            "--student-from-teacher LAYERS"
        )
    return chosen[0]


def build_student(cfg: DistillConfig, kind: str, spec: str, output: Path) -> str:
    """The student's model reference; a built student is published as OUTPUT-init first."""
    if kind == "pretrained":
        return spec
    init = output.with_name(output.name + "-init")
    artifacts.prepare_output(init, overwrite=True, resume=False)
    work = artifacts.tmp_dir_for(init)
    work.mkdir(parents=True, exist_ok=True)
    try:
        if kind == "config":
            students.student_from_config(spec, cfg.teacher, work, cfg.seed)
        else:
            students.student_from_teacher(spec, cfg.teacher, work, cfg.trust_remote_code)
        artifacts.write_manifest(
            work,
            {
                "kind": "model",
                "format": "hf-safetensors",
                "stage": "distill-init",
                "task": "causal",
                "parent": {"ref": cfg.teacher, "path": resolve(cfg.teacher).path},
                "student_init": {"kind": kind, "spec": spec},
                "seed": cfg.seed,
            },
        )
        artifacts.publish(work, init)
    except BaseException:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
        raise
    return str(init)


def check_tokenizers(teacher: str, student: str) -> None:
    """Logits mode compares distributions token by token: the vocabularies must be the same."""
    t = load_tokenizer(students.tokenizer_dir(teacher)).get_vocab()
    s = load_tokenizer(students.tokenizer_dir(student)).get_vocab()
    if t != s:
        differ = len(set(t.items()) ^ set(s.items()))
        raise HonedError(
            f"logits mode needs the same tokenizer, but teacher and student vocabularies differ "
            f"({len(t)} vs {len(s)} tokens, {differ} entries differ): use --mode sequence"
        )


def warn_if_larger(teacher: str, student: str) -> dict[str, int | None]:
    """Parameter counts; a student larger than its teacher is a warning."""
    counts = {
        "teacher": students.parameter_count(teacher),
        "student": students.parameter_count(student),
    }
    if counts["teacher"] and counts["student"] and counts["student"] > counts["teacher"]:
        log.warning(
            "the student (%d parameters) is larger than the teacher (%d): check the "
            "order of --teacher and --student",
            counts["student"],
            counts["teacher"],
        )
    return counts


def fingerprint(ref: str) -> str:
    """sha256 over the teacher's weight files (a hub id: over its name); an adapter's over its
    own files and its base's fingerprint, so one adapter on two bases makes two caches."""
    return _source_fingerprint(resolve(ref))


def _source_fingerprint(source: ModelSource) -> str:
    path = Path(source.path)
    if source.kind == "hub" or not path.exists():
        return hashlib.sha256(f"hub:{source.ref}".encode()).hexdigest()
    files = (
        [path]
        if path.is_file()
        else sorted(
            p
            for p in path.rglob("*")
            if p.suffix in (".safetensors", ".gguf", ".json") and p.name != artifacts.MANIFEST
        )
    )
    digest = hashlib.sha256()
    if source.base is not None:
        digest.update(_source_fingerprint(source.base).encode())
    for f in files:
        digest.update(f.name.encode() + artifacts.sha256_file(f).encode())
    return digest.hexdigest()


def data_hash(data: PreparedData) -> str:
    """sha256 of the training examples as the stage formatted them."""
    return hashlib.sha256(json.dumps(data.train, sort_keys=True, default=str).encode()).hexdigest()


def finetune_config(cfg: DistillConfig, student: str, output: Path, data: str) -> FinetuneConfig:
    """The fine-tune stage's config for training the student. `--resume` of a run stopped
    before its training began (while the teacher answered: that part resumes by itself)
    starts the training."""
    values = {k: getattr(cfg, k) for k in FinetuneConfig.model_fields}
    started = artifacts.tmp_dir_for(output).is_dir()
    if cfg.resume and not started:
        log.info("the training of %s had not begun: starting it", output)
    update = {"model": student, "output": output, "data": data, "resume": cfg.resume and started}
    return FinetuneConfig(**{**values, **update})


def distill(cfg: DistillConfig) -> RunResult | None:
    """Run the distill stage; returns the result on the main process."""
    if not cfg.teacher:
        raise HonedError("no teacher: pass --teacher REF (a larger model than the student)")
    if cfg.mode == "sequence" and cfg.on_policy:
        raise HonedError("--on-policy needs the teacher's logits: use it with --mode logits")
    check_hint(cfg)
    kind, spec = student_choice(cfg)
    output = (cfg.output or default_output(cfg)).resolve()
    if cfg.mode == "logits" and cfg.batching == "packed":
        raise HonedError("logits mode works on whole sequences: use --batching padded or grouped")
    if (output / artifacts.MANIFEST).exists() and not (cfg.overwrite or cfg.resume):
        raise HonedError(f"'{output}' already exists: pass --overwrite or --resume")
    student = build_student(cfg, kind, spec, output)
    if cfg.mode == "logits":
        check_tokenizers(cfg.teacher, student)
    record: dict[str, Any] = {
        "teacher": {"ref": cfg.teacher},
        "student_init": {"kind": kind, "spec": spec, "ref": student},
        "mode": cfg.mode,
        "targets": "teacher" if cfg.mode == "sequence" and cfg.targets == "data" else cfg.targets,
        "parameters": warn_if_larger(cfg.teacher, student),
    }
    if cfg.mode == "logits":
        return _logits(cfg, student, output, record)

    def manifest(data: PreparedData) -> dict[str, Any]:
        return {"stage": "distill", "distill": {**record, "data_sha256": data_hash(data)}}

    ft = finetune_config(cfg, student, output, cfg.data)
    ft = _on_teacher_answers(ft, cfg, output, record)
    return finetune(ft, hooks=StageHooks(manifest=manifest))


def check_hint(cfg: DistillConfig) -> None:
    """--teacher-hint shapes the teacher's answers: it needs a run that asks for them, on
    code data that has reference answers to show."""
    if not cfg.teacher_hint:
        return
    if cfg.mode == "logits" and cfg.targets == "data":
        raise HonedError(
            "--teacher-hint shapes the teacher's answers: use it with --mode sequence or "
            "--targets teacher or both"
        )
    from honed.distill.sequence import teacher_task

    teacher_task(cfg)  # text data: one line


def _logits(
    cfg: DistillConfig, student: str, output: Path, record: dict[str, Any]
) -> RunResult | None:
    """KD on the teacher's cached logits, over the data's answers or the teacher's own."""
    from honed.distill.logits import logits_hooks

    ft = finetune_config(cfg, student, output, cfg.data)
    if cfg.targets != "data":
        ft = _on_teacher_answers(ft, cfg, output, record)
    hooks = logits_hooks(cfg, record, cache_root=cfg.cache_dir or cache_root() / "kd")
    return finetune(ft, hooks=hooks)


def _on_teacher_answers(
    ft: FinetuneConfig, cfg: DistillConfig, output: Path, record: dict[str, Any]
) -> FinetuneConfig:
    """Training on the teacher's (passing) answers, written as a jsonl first; what was made
    goes in the record. --max-samples chose the teacher's prompts; every kept answer to them
    is trained on; with `--targets both`, the data's own answers to those prompts too.
    Validation is the data's own validation split where it has one (as for plain
    fine-tuning on the data), else a share of these rows."""
    from honed.distill.sequence import teacher_data
    from honed.distill.textdata import own_validation, with_references

    data_path, made = teacher_data(cfg, output)
    if cfg.targets == "both":
        data_path, made = with_references(cfg, data_path, made)
    record["teacher_data"] = made
    eval_data = cfg.eval_data or own_validation(cfg, data_path.parent)
    return ft.model_copy(
        update={"data": str(data_path), "max_samples": None, "eval_data": eval_data}
    )
