"""SIGTERM stops honed the way Ctrl-C does: a checkpoint in training, kept samples in an eval."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from honed.cli import stop_as_on_ctrl_c
from honed.train.callbacks import InterruptHandler, RunFlags

SLEEPER = (  # `honed eval` whose stage sleeps: the real CLI, typer included
    "import sys, time\n"
    "import honed.evaluate.run as run\n"
    "def evaluate(cfg, backend=None):\n"
    "    print('ready', flush=True)\n"
    "    time.sleep(60)\n"
    "run.evaluate = evaluate\n"
    "sys.argv = ['honed', 'eval', 'some-model', '--task', 'humaneval']\n"
    "from honed.cli import main\n"
    "main()\n"
)


def test_sigterm_ends_a_running_command_like_ctrl_c():
    proc = subprocess.Popen(
        [sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "honed: interrupted" in stderr


def test_sigterm_during_training_asks_for_a_checkpoint_not_an_abort():
    flags = RunFlags()
    with InterruptHandler(flags):
        stop_as_on_ctrl_c(signal.SIGTERM, None)  # no exception: the trainer stops at its step
    assert flags.interrupted


def test_sigterm_stops_even_where_ctrl_c_is_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a script's background job
    try:
        with pytest.raises(KeyboardInterrupt):
            stop_as_on_ctrl_c(signal.SIGTERM, None)
    finally:
        signal.signal(signal.SIGINT, previous)
