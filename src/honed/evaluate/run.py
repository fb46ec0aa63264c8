"""The eval stage: generate with any Backend; score code in the sandbox, text with metrics.

Code tasks are generated in batches, and each program goes to the sandbox pool as soon as
its completion exists, so execution overlaps generation. Text tasks (`text:SPEC`) live in
`textmetrics.py`. Everything is written into a work directory that is renamed into place
only when the eval is complete, so a failed eval leaves nothing half-written; a code eval
that stops keeps the samples it generated there, for `--resume` (journal.py).
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from honed import artifacts
from honed.bench import machine
from honed.config import EvalConfig
from honed.errors import HonedError
from honed.evaluate import journal, tasks
from honed.evaluate.extract import answer_complete
from honed.evaluate.passk import pass_at_k
from honed.evaluate.report import (
    base_summary,
    default_output,
    samples_model,
    samples_to_rescore,
    write_outputs,
)
from honed.evaluate.sandbox import SandboxLimits, SandboxPool, SandboxUnavailable, check_sandbox
from honed.progress import track
from honed.runtime.base import Backend, Completion, Finished, GenerationParams
from honed.runtime.configured import load_configured

log = logging.getLogger(__name__)
STATUSES = ("passed", "failed", "timeout", "error")
Row = dict[str, Any]


@dataclass
class GenStats:
    """Generation time and token counts, summed over generate calls."""

    seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompts_failed: int = 0

    def add(self, seconds: float, completions: list[Completion]) -> None:
        self.seconds += seconds
        self.prompt_tokens += sum(c.prompt_tokens for c in completions)
        self.completion_tokens += sum(c.completion_tokens for c in completions)
        self.prompts_failed += sum(c.finish_reason == "error" for c in completions)

    def as_dict(self) -> dict[str, Any]:
        rate = self.completion_tokens / self.seconds if self.seconds else None
        return {
            "generation_s": round(self.seconds, 3),
            "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens},
            "tokens_per_s": round(rate, 2) if rate else None,
            "prompts_failed": self.prompts_failed,
        }


@dataclass
class Scorer:
    """Sends each program to the sandbox as it arrives; fills in the results at the end."""

    pool: SandboxPool
    rows: list[Row] = field(default_factory=list)
    first_submit: float | None = None

    def add(self, row: Row, program: str) -> None:
        self.first_submit = self.first_submit or time.monotonic()
        self.pool.submit(len(self.rows), program)
        self.rows.append({**row, "program": program})

    def finish(self) -> dict[str, float]:
        results = self.pool.results()
        span = time.monotonic() - (self.first_submit or time.monotonic())
        for index, row in enumerate(self.rows):
            outcome = results[index]
            row.update(result=outcome.status, message=outcome.message)
            row["exec_s"] = round(outcome.duration_s, 3)
        busy = sum(r.duration_s for r in results.values())
        return {"execution_s": round(span, 3), "execution_sum_s": round(busy, 3)}


@dataclass
class CodePlan:
    """A checked code eval: the task, its problems, and the samples to re-score if any."""

    task: tasks.CodeTask
    problems: list[tasks.Problem]
    ks: list[int]
    sandbox: str
    rescore: list[tuple[tasks.Problem, Row]] | None = None
    needs_backend: bool = True
    journal: journal.Journal | None = None


def parse_ks(text: str, n: int) -> list[int]:
    """The k values of `--k 1,10`; each must be at most the samples per problem."""
    ks = sorted({int(part) for part in text.split(",") if part.strip()})
    if not ks or ks[0] < 1:
        raise HonedError(f"bad --k '{text}': give positive numbers like 1 or 1,10")
    if ks[-1] > n:
        raise HonedError(
            f"pass@{ks[-1]} needs {ks[-1]} or more samples per problem, there are {n}: "
            "pass --n-samples with --temperature > 0, or a smaller --k"
        )
    return ks


def ensure_sandbox(unsafe: bool) -> str:
    """Refuse to run code without a working sandbox unless told to; name what runs it."""
    if unsafe:
        log.warning("running generated code WITHOUT a sandbox (--unsafe-no-sandbox)")
        return "none (--unsafe-no-sandbox)"
    try:
        check_sandbox()
    except SandboxUnavailable as exc:
        raise HonedError(str(exc).removeprefix("honed: ")) from exc
    return "bubblewrap"


def load_model_backend(cfg: EvalConfig) -> Backend:
    """Load cfg.model with the runtime; any failure is a one-line HonedError."""
    given = cfg.backend == "transformers" or "batch_size" in cfg.model_fields_set
    return load_configured(cfg, batch_size=cfg.batch_size if given else None)


def chats(backend: Backend) -> bool:
    """True for a causal model with a chat template (seq2seq models are prompted plainly)."""
    return backend.has_chat_template and not getattr(backend, "is_seq2seq", False)


def choose_prompting(requested: str, has_chat_template: bool) -> str:
    """base or chat: chat when asked, or (auto) when the model has a chat template."""
    if requested == "chat" and not has_chat_template:
        raise HonedError("--prompting chat needs a model with a chat template: use base")
    if requested == "auto":
        return "chat" if has_chat_template else "base"
    return requested


def params_for(
    cfg: EvalConfig, sample: int, stop: tuple[str, ...], finished: Finished = None
) -> GenerationParams:
    """Generation settings for sample number `sample` of every problem."""
    return GenerationParams(
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        seed=cfg.seed + sample,
        stop=stop,
        finished=finished,
    )


def code_done(prompts: list[str], problems: list[tasks.Problem]) -> Finished:
    """finished(prompt, reply) for chat replies: true once the reply's scored code is complete
    (`answer_complete`), so the prose a chat model writes after its code is not generated."""
    entry = dict(zip(prompts, (p.entry_point for p in problems), strict=True))
    return lambda prompt, reply: answer_complete(reply, entry.get(prompt))


BATCHES_PER_CALL = 4  # prompts handed to a refilling backend at once, in batches


def generate_in_batches(
    backend: Backend, prompts: list[str], params: GenerationParams, batch_size: int,
    stats: GenStats, label: str,
) -> Iterator[tuple[int, str, Completion]]:  # fmt: skip
    """(index, text cut at the stops, completion) for each prompt, generated call by call: a
    batch per call, or several where the backend refills its batch as rows end (each ends
    on its own, so one long answer does not hold up the rest)."""
    from honed.runtime.text import truncate_at_stop

    per_call = batch_size * (BATCHES_PER_CALL if getattr(backend, "refills_batch", False) else 1)
    starts, refused = range(0, len(prompts), per_call), []
    for start in track(starts, label, total=len(starts)):
        batch = prompts[start : start + per_call]
        began = time.monotonic()
        completions = generate_or_fail(backend, batch, params)
        stats.add(time.monotonic() - began, completions)
        if len(completions) != len(batch):
            raise RuntimeError(f"backend returned {len(completions)} of {len(batch)} completions")
        refused += [c.extra["error"] for c in completions if c.finish_reason == "error"]
        if len(refused) == len(prompts):  # nothing generated at all: a setting, not a prompt
            raise HonedError(f"the model refused every prompt: {refused[0]}")
        for offset, completion in enumerate(completions):
            yield start + offset, truncate_at_stop(completion.text, params.stop)[0], completion


def generate_or_fail(
    backend: Backend, batch: list[str], params: GenerationParams
) -> list[Completion]:
    """The batch's completions. A prompt the model refuses (longer than its context) does not
    abort the eval: the batch is retried in halves down to the refused prompt, and each
    refused prompt becomes an empty completion with finish_reason "error" and the reason,
    which fails its problem."""
    try:
        return backend.generate(batch, params)
    except HonedError as error:
        if len(batch) > 1:
            half = len(batch) // 2
            return [
                *generate_or_fail(backend, batch[:half], params),
                *generate_or_fail(backend, batch[half:], params),
            ]
        log.warning("prompt skipped: %s", error)
        return [Completion("", 0, 0, 0.0, 0.0, finish_reason="error", extra={"error": str(error)})]


def plan_code(cfg: EvalConfig) -> CodePlan:
    """Check task, samples file, k and sandbox before anything is loaded or written."""
    task = tasks.get_task(cfg.task)
    problems = task.load()[: cfg.limit]
    if cfg.samples is not None:
        pairs = samples_to_rescore(cfg, task)
        per_task = Counter(problem.task_id for problem, _ in pairs)
        ks = parse_ks(cfg.k, min(per_task.values()))
        return CodePlan(task, problems, ks, ensure_sandbox(cfg.unsafe_no_sandbox), pairs, False)
    if cfg.n_samples > 1 and cfg.temperature == 0:
        raise HonedError("--n-samples > 1 needs --temperature > 0: greedy samples are identical")
    ks = parse_ks(cfg.k, cfg.n_samples)
    return CodePlan(task, problems, ks, ensure_sandbox(cfg.unsafe_no_sandbox))


def code_prompt(
    backend: Backend, task: tasks.CodeTask, problem: tasks.Problem, prompting: str,
    template: str | None,
) -> str:  # fmt: skip
    """The exact text the model completes for one problem."""
    if prompting == "chat":
        return backend.chat_prompt(tasks.chat_messages(task, problem))
    return tasks.base_prompt(task, problem, template)


def generate_code(cfg: EvalConfig, plan: CodePlan, backend: Backend, scorer: Scorer) -> tuple:
    """Generate n samples per problem, handing each program to the scorer at once."""
    prompting = choose_prompting(cfg.prompting, chats(backend))
    template = tasks.choose_template(cfg.template, cfg.model)
    task, problems = plan.task, plan.problems
    prompts = [code_prompt(backend, task, p, prompting, template) for p in problems]
    stops = task.stops if prompting == "base" else ()
    early = prompting == "chat" and cfg.stop_at_code
    finished = code_done(prompts, problems) if early else None
    stats, kept = GenStats(), plan.journal or journal.Journal(None)
    for sample in range(cfg.n_samples):
        label = f"{task.name}: sample {sample + 1}/{cfg.n_samples}"
        params = params_for(cfg, sample, stops, finished)
        todo = kept.missing(sample, [problem.task_id for problem in problems])
        for problem in problems:  # a resumed eval's samples are scored again
            if row := kept.done.get((sample, problem.task_id)):
                scorer.add(row, tasks.program_for(task, problem, row["completion"], prompting))
        batches = generate_in_batches(
            backend, [prompts[i] for i in todo], params, cfg.batch_size, stats, label
        )
        for index, text, completion in batches:
            problem = problems[todo[index]]
            row = {
                "task_id": problem.task_id,
                "sample": sample,
                "prompting": prompting,
                "prompt": prompts[todo[index]],
                "completion": text,
                "finish_reason": completion.finish_reason,
                **({"error": completion.extra["error"]} if "error" in completion.extra else {}),
            }
            kept.record(row)
            scorer.add(row, tasks.program_for(task, problem, text, prompting))
    reused = {"samples_reused": len(kept.done)} if kept.done else {}
    return prompting, {**stats.as_dict(), "stop": list(stops), "stop_at_code": early, **reused}


def rescore_code(cfg: EvalConfig, plan: CodePlan, scorer: Scorer) -> str:
    """Re-build and run the programs of existing samples; returns the prompting used."""
    assert plan.rescore is not None
    seen: Counter[str] = Counter()
    for problem, row in plan.rescore:
        prompting = row.get("prompting", "base") if cfg.prompting == "auto" else cfg.prompting
        new = {
            "task_id": problem.task_id,
            "sample": seen[problem.task_id],
            "prompting": prompting,
            "prompt": row.get("prompt"),
            "completion": row["completion"],
        }
        seen[problem.task_id] += 1
        scorer.add(new, tasks.program_for(plan.task, problem, row["completion"], prompting))
    used = {row["prompting"] for row in scorer.rows}
    return used.pop() if len(used) == 1 else "mixed"


def run_code(cfg: EvalConfig, plan: CodePlan, backend: Backend | None) -> tuple[dict, list[Row]]:
    """Generate (or re-score), run every program in the sandbox, and compute pass@k."""
    limits = SandboxLimits(timeout_s=cfg.timeout_s, cpu_s=max(1, math.ceil(cfg.timeout_s)))
    with SandboxPool(cfg.workers, limits, unsafe_no_sandbox=cfg.unsafe_no_sandbox) as pool:
        scorer = Scorer(pool)
        if plan.rescore is not None:
            prompting, generation = rescore_code(cfg, plan, scorer), {}
        else:
            assert backend is not None
            prompting, generation = generate_code(cfg, plan, backend, scorer)
        timing = scorer.finish()
    if plan.journal is not None and plan.journal.done:  # reused samples were scored first
        order = {problem.task_id: i for i, problem in enumerate(plan.problems)}
        scorer.rows.sort(key=lambda row: (row["sample"], order[row["task_id"]]))
    outcomes: dict[str, list[bool]] = {}
    for row in scorer.rows:
        outcomes.setdefault(row["task_id"], []).append(row["result"] == "passed")
    counts = Counter(row["result"] for row in scorer.rows)
    summary = {
        "prompting": prompting,
        "problems": len(outcomes),
        "n": min(len(v) for v in outcomes.values()),
        "k": plan.ks,
        "pass@k": pass_at_k(outcomes, plan.ks),
        "counts": {status: counts.get(status, 0) for status in STATUSES},
        **generation,
        **timing,
        "sandbox": plan.sandbox,
        "program": plan.task.assembly,
    }
    return summary, scorer.rows


def keep_or_remove(work: Path, kept: journal.Journal | None) -> None:
    """After a failed eval: keep the work dir when it holds generated samples (for
    --resume), else remove it so that nothing half-written is left."""
    count = kept.kept() if kept is not None else 0
    if not count:
        shutil.rmtree(work, ignore_errors=True)
        return
    log.warning(
        "the eval stopped; its %d generated samples are kept in %s: run the same command with "
        "--resume to generate only the rest (or --overwrite to start over)",
        count,
        work,
    )


def evaluate(cfg: EvalConfig, backend: Backend | None = None) -> dict[str, Any]:
    """Run the eval stage; returns the summary (also written to the output directory)."""
    from honed.evaluate import textmetrics

    named_by_samples = cfg.samples is not None and "model" not in cfg.model_fields_set
    model = samples_model(cfg.samples) if named_by_samples else cfg.model  # type: ignore[arg-type]
    final = (cfg.output or default_output(cfg.task, model)).resolve()
    is_text = cfg.task.startswith("text:")
    if cfg.resume and (is_text or cfg.samples is not None):
        raise HonedError("--resume continues the generation of a code task: run without it")
    plan = textmetrics.plan_text(cfg) if is_text else plan_code(cfg)  # checks all input first
    work = artifacts.prepare_output(final, overwrite=cfg.overwrite, resume=cfg.resume)
    if isinstance(plan, CodePlan) and plan.needs_backend:
        plan.journal = journal.start(work, cfg)  # a refused --resume leaves work as it was
    owned = backend is None and plan.needs_backend
    try:
        began, ticks = time.monotonic(), machine.cpu_ticks()
        if owned:
            backend = load_model_backend(cfg)
        runner = textmetrics.run_text if is_text else run_code
        summary, rows = runner(cfg, plan, backend)  # type: ignore[arg-type]
        summary = {**base_summary(cfg, model, getattr(backend, "name", None)), **summary}
        summary |= {"wall_s": round(time.monotonic() - began, 3), "output": str(final)}
        summary |= machine.taken_since(
            ticks, "this eval", "its timings read slow; pass@k is unaffected"
        )
        write_outputs(work, summary, rows)
        journal.close(work)
    except BaseException:
        keep_or_remove(work, getattr(plan, "journal", None))
        raise
    finally:
        if owned and backend is not None:
            backend.close()
    artifacts.publish(work, final)
    return summary
