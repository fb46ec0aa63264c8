"""Peak memory of logit distillation with the teacher freed before training, and kept.

Runs the same short `honed distill --mode logits` twice in fresh processes, each with its own
empty teacher cache: once as honed runs it (the teacher fills the cache for every sequence,
then is freed) and once with the release disabled (the teacher stays resident while the
student trains, as before). Each child's peak resident memory comes from wait4's rusage.
Prints and saves both, with the wall times; appends nothing to RESULTS.md by itself.

    .venv/bin/python benchmarks/distill_memory.py [--max-samples 16 --max-steps 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from distill_runs import PAIRS
from local_models import ensure_local
from results_md import provenance

from honed.models.load import weights_dir
from honed.models.resolve import resolve

HERE = Path(__file__).resolve().parent
KEEP_TEACHER = "from honed.distill import kd; kd.Teacher.release = lambda self: None; "
RUN_CLI = "import sys; from honed.cli import main; sys.argv[0] = 'honed'; main()"


def command(args: argparse.Namespace, work: Path) -> list[str]:
    teacher, student = PAIRS["logits"]
    return ["distill", "--teacher", teacher, "--student", student, "--mode", "logits",
            "--data", "mbpp", "--method", "lora", "--max-samples", str(args.max_samples),
            "--max-steps", str(args.max_steps), "--batch-size", str(args.batch_size),
            "--max-length", "512", "--max-eval-samples", "4", "--samples", "0",
            "--cache-dir", str(work / "kd"), "--output", str(work / "student"),
            "--overwrite"]  # fmt: skip


def peak_of(code: str, argv: list[str]) -> dict[str, float]:
    """Run honed's CLI in a child; its peak RSS (MB) and wall time (s)."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"honed {' '.join(argv)} failed (exit {status >> 8})")
    return {"peak_rss_mb": usage.ru_maxrss / 1024, "wall_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-samples", type=int, default=16)
    parser.add_argument("--max-steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    ensure_local(*PAIRS["logits"])
    for ref in PAIRS["logits"]:  # make the GGUF float copies first, outside the measurement
        weights_dir(resolve(ref))
    (HERE.parent / "runs").mkdir(exist_ok=True)
    runs = {}
    variants = {"teacher freed (honed)": RUN_CLI, "teacher kept": KEEP_TEACHER + RUN_CLI}
    for name, code in variants.items():
        with tempfile.TemporaryDirectory(dir=HERE.parent / "runs") as tmp:
            argv = command(args, Path(tmp))
            runs[name] = peak_of(code, argv)
        print(f"{name}: peak RSS {runs[name]['peak_rss_mb']:.0f} MB, {runs[name]['wall_s']:.0f} s")
    record = {"benchmark": "distill_memory", "pair": PAIRS["logits"],
              **provenance(os=platform.platform()), "honed": "honed " + " ".join(argv),
              "runs": runs}  # fmt: skip
    out = HERE / "results" / "distill_memory.json"
    out.write_text(json.dumps(record, indent=2))
    print(f"saved {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
