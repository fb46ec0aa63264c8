"""The CLI as a user runs it: bad input, Ctrl-C, resume, and a 2-process accelerate launch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from honed.cli import app

pytestmark = pytest.mark.integration
QUICK = ["--max-steps", "4", "--samples", "0", "--report-to", "none", "--logging-steps", "1"]


def honed(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["finetune", *args])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model", "nope"], "model 'nope' not found: pass a hub id"),
        (["--data", "missing.jsonl"], "data file 'missing.jsonl' not found"),
        (["--method", "xlora"], "bad value for 'method'"),
        (["lr=0.1"], "unknown config key 'lr'"),
        (["--lora-targets", "nonexistent_proj"], "LoRA target nonexistent_proj matches no module"),
        (["--batch-size", "zero"], "bad value for 'batch_size'"),
        (["--data", "org/not-a-dataset"], "data 'org/not-a-dataset' not found"),
        (["--report-to", "mlflow"], "unknown --report-to mlflow"),
    ],
)
def test_bad_input_is_one_line(tiny_causal, arith_data, args, expected):
    base = ["--model", str(tiny_causal), "--data", str(arith_data), *QUICK]
    code, output = honed(*base, *args)
    assert code == 2, output
    assert expected in " ".join(output.split()), output
    assert "Traceback" not in output
    assert not list(Path("runs").glob("*.tmp"))  # a failed fresh run leaves nothing behind


def test_malformed_row_and_existing_output(tiny_causal, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": 1\n')
    code, output = honed("--model", str(tiny_causal), "--data", str(data), *QUICK)
    assert code == 2 and "d.jsonl:2: not valid JSON" in output and "--skip-bad-rows" in output
    out = tmp_path / "exists"
    out.mkdir()
    (out / "precious").write_text("keep")
    code, output = honed(
        "--model",
        str(tiny_causal),
        "--data",
        str(data),
        "--output",
        str(out),
        "--skip-bad-rows",
        *QUICK,
    )
    assert code == 2 and "--overwrite" in output and (out / "precious").read_text() == "keep"


def _env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[2] / "src")
    return {**os.environ, "PYTHONPATH": src, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def finetune_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    """`finetune` arguments for a quiet tiny run; extra flags override earlier ones."""
    return ["finetune", "--model", str(model), "--data", str(data), "--output", str(out),
            "--samples", "0", "--report-to", "none", "--logging-steps", "1", *extra]  # fmt: skip


def test_ctrl_c_saves_checkpoint_exits_130_and_resumes(tiny_causal, arith_data, tmp_path):
    out = tmp_path / "run"
    honed_cmd = [sys.executable, "-m", "honed"]
    args = finetune_args(tiny_causal, arith_data, out, "--save-steps", "1000")
    proc = subprocess.Popen([*honed_cmd, *args, "--max-steps", "400"], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    metrics = out.with_name("run.tmp") / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and "loss" in metrics.read_text()):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 130, output
    assert "--resume" in output
    ckpts = list((out.with_name("run.tmp") / "checkpoints").glob("checkpoint-*"))
    assert len(ckpts) == 1 and (ckpts[0] / "trainer_state.json").is_file()
    step = int(ckpts[0].name.split("-")[1])
    assert 0 < step < 400
    resumed = subprocess.run([*honed_cmd, *args, "--max-steps", str(step + 3), "--resume"],
                             env=_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["metrics"]["steps"] == step + 3


def test_accelerate_launch_two_processes(tiny_causal, arith_data, tmp_path):
    out = tmp_path / "ddp"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2",
              "--cpu", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no"]  # fmt: skip
    args = finetune_args(tiny_causal, arith_data, out, "--method", "lora", "--max-steps", "6",
                         "--samples", "1", "--sample-max-new-tokens", "4")  # fmt: skip
    cmd = [*launch, "-m", "honed", *args]
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["metrics"]["steps"] == 6
    assert (out / "adapter_model.safetensors").is_file()
    losses = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum("loss" in r for r in losses) == 6  # one writer, not two
