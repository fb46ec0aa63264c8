"""The teacher's answers to text data are journaled as they come: a stopped run's answers
are reused, only the rest is generated, and the rows are those of an uninterrupted run."""

from __future__ import annotations

import pytest

from honed.config import DistillConfig
from honed.distill.textdata import answers
from honed.evaluate import journal
from honed.runtime.base import Completion, GenerationParams

PROMPTS = [f"what is {i} + {i}?" for i in range(10)]


class Teacher:
    """Answers each prompt with its own number and the sample's seed; Ctrl-C at call
    `stop_at`; counts the prompts it answered."""

    has_chat_template = False

    def __init__(self, stop_at: int = 0) -> None:
        self.stop_at, self.calls, self.answered = stop_at, 0, 0

    def generate(self, prompts: list[str], params: GenerationParams) -> list[Completion]:
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        self.answered += len(prompts)
        return [Completion(f"{p.split()[-1]} {params.seed}", 3, 3, 0.0, 0.01) for p in prompts]


def test_a_stopped_teacher_continues_from_its_journal(tmp_path):
    cfg = DistillConfig(teacher="t", data="d", candidates=2, teacher_temperature=0.5)
    wanted = {"teacher": "t", "candidates": 2}
    with pytest.raises(KeyboardInterrupt):  # 8 prompts per call: the 3rd call is sample 2
        answers(cfg, Teacher(stop_at=3), PROMPTS, journal.begin(tmp_path, wanted, False))
    assert journal.matches(tmp_path, wanted) and not journal.matches(tmp_path, {"other": 1})
    teacher = Teacher()
    rows, counts = answers(cfg, teacher, PROMPTS, journal.begin(tmp_path, wanted, True))
    assert teacher.answered == 10 and counts["answers_reused"] == 10
    whole, _ = answers(cfg, Teacher(), PROMPTS, journal.Journal(None))
    assert rows == whole and len(rows) == 20
    journal.begin(tmp_path, wanted, False)  # a fresh start forgets the old answers
    assert not journal.matches(tmp_path, wanted)
