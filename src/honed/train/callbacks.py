"""Trainer callbacks: metrics.jsonl with tokens/s and resident memory, a non-finite-loss
guard, and Ctrl-C.

The guard and the interrupt handler only set flags and steer the trainer's control object,
so the HF/TRL training loop stays the one that runs.
"""

from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import ProgressCallback

from honed.bench.memory import peak_rss_bytes, resident_bytes

# kd and ce: the two parts of the distillation loss (honed distill, logits mode)
LOGGED_KEYS = ("loss", "eval_loss", "learning_rate", "grad_norm", "epoch", "kd", "ce")


class MetricsLogger(TrainerCallback):
    """Append one JSON line per log event: loss, eval loss, lr, grad norm, real tokens/s, and
    this process's resident memory now and at its peak (GB; a slow climb over steps shows a
    run heading for the out-of-memory killer before it gets there)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last: tuple[float, int] | None = None

    def on_train_begin(self, args, state, control, **kwargs: Any) -> None:
        self._last = (time.perf_counter(), state.num_input_tokens_seen)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if not logs or not state.is_world_process_zero:
            return
        record: dict[str, Any] = {"step": state.global_step}
        record.update({k: logs[k] for k in LOGGED_KEYS if k in logs})
        if set(record) <= {"step", "epoch"}:
            return  # the end-of-training summary: nothing per-step to plot
        now, tokens = time.perf_counter(), state.num_input_tokens_seen
        if "loss" in logs and self._last is not None and now > self._last[0]:
            record["tokens_per_s"] = round((tokens - self._last[1]) / (now - self._last[0]), 2)
            record["tokens_seen"] = tokens
            self._last = (now, tokens)
            resident, peak = resident_bytes(), peak_rss_bytes()
            record.update(
                {"rss_gb": round((resident or 0) / 1e9, 2), "peak_rss_gb": round(peak / 1e9, 2)}
            )
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")


class QuietProgress(ProgressCallback):
    """The stock progress bar without the raw log dicts (those go to metrics.jsonl)."""

    def on_log(self, args, state, control, logs=None, **kwargs: Any) -> None:
        return None


@dataclass
class RunFlags:
    """State shared by the trainer and the callbacks for one run."""

    patience: int = 3
    step_finite: bool = True
    bad_streak: int = 0
    first_bad_step: int | None = None
    stopped_nonfinite: bool = False
    interrupted: bool = False
    saved_steps: list[int] = field(default_factory=list)

    def observe_loss(self, loss: torch.Tensor) -> None:
        """Called for each micro-batch loss; any non-finite value marks the step bad."""
        if not bool(torch.isfinite(loss.detach()).all()):
            self.step_finite = False


class GuardCallback(TrainerCallback):
    """Stops on N consecutive non-finite steps (never saving their weights) and on Ctrl-C."""

    def __init__(self, flags: RunFlags) -> None:
        self.flags = flags

    def on_step_end(self, args, state: TrainerState, control: TrainerControl, **kwargs: Any):
        flags = self.flags
        if flags.step_finite:
            flags.bad_streak = 0
        else:
            flags.bad_streak += 1
            flags.first_bad_step = flags.first_bad_step or state.global_step
            control.should_save = False  # never checkpoint weights a bad step touched
            if flags.bad_streak >= flags.patience:
                flags.stopped_nonfinite = True
                control.should_training_stop = True
        flags.step_finite = True
        if flags.interrupted and not flags.stopped_nonfinite:
            control.should_save = flags.bad_streak == 0
            control.should_training_stop = True
        return control

    def on_save(self, args, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self.flags.saved_steps.append(state.global_step)


class InterruptHandler:
    """First Ctrl-C asks the run to checkpoint and stop; a second one aborts at once."""

    def __init__(self, flags: RunFlags) -> None:
        self.flags = flags
        self._previous: Any = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.flags.interrupted = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\nhoned: interrupted: saving a checkpoint (Ctrl-C again to abort)", flush=True)

    def __enter__(self) -> InterruptHandler:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)


def finite(value: float | None) -> bool:
    """True for a real, finite number."""
    return value is not None and math.isfinite(value)
