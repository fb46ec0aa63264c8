"""One matmul in float32 and in bf16 on this CPU: time and the CPU time it used.

Explains train_dtype_speed.py's ratio: where oneDNN reports no native bf16, torch's bf16
matmul on the CPU takes another path. CPU seconds over wall seconds shows how many cores a
call kept busy. Shapes: a batch of 512 token rows times a 1024 x 4096 weight (an MLP
matrix of a small model). Prints, saves results/bf16_matmul_probe.json and rewrites its
RESULTS.md section.

    .venv/bin/python benchmarks/bf16_matmul_probe.py [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from results_md import provenance, replace_section  # noqa: E402

from honed.models.load import cpu_has_native_bf16  # noqa: E402

HEADING = "## One matmul on the CPU: float32 against bf16"
ROWS, K, N = 512, 1024, 4096


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(dtype: torch.dtype, reps: int) -> dict[str, float]:
    """Mean wall and CPU seconds of one [ROWS, K] x [K, N] matmul, after a warm-up call."""
    a, b = torch.randn(ROWS, K, dtype=dtype), torch.randn(K, N, dtype=dtype)
    a @ b
    wall, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(reps):
        a @ b
    wall, cpu = (time.perf_counter() - wall) / reps, (cpu_seconds() - cpu) / reps
    return {"wall_ms": round(wall * 1000, 2), "cpu_over_wall": round(cpu / wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    results = {str(d).removeprefix("torch."): timed(d, args.reps)
               for d in (torch.float32, torch.bfloat16)}  # fmt: skip
    ratio = results["bfloat16"]["wall_ms"] / results["float32"]["wall_ms"]
    record = {"benchmark": "bf16_matmul_probe", "shape": [ROWS, K, N], "reps": args.reps,
              **provenance(native_bf16=cpu_has_native_bf16(), threads=torch.get_num_threads()),
              "results": results, "bf16_over_fp32_time": round(ratio, 1)}  # fmt: skip
    print(json.dumps(record, indent=2))
    (HERE / "results" / "bf16_matmul_probe.json").write_text(json.dumps(record, indent=2))
    m = record["machine"]
    native = "computes bf16 natively" if m["native_bf16"] else "has no native bf16"
    replace_section(HEADING, "\n".join([
        HEADING, "",
        f"Measured {record['date']} on {m['cpu']}, {m['cores']} cores, {m['threads']} torch "
        f"threads ({native}: oneDNN's check); `{record['command']}`. One [{ROWS}, {K}] x "
        f"[{K}, {N}] matmul, mean of {args.reps} after a warm-up; CPU/wall: cores kept busy.",
        "", "| dtype | ms per matmul | CPU seconds / wall seconds |", "|---|---|---|",
        *(f"| {d} | {v['wall_ms']} | {v['cpu_over_wall']} |" for d, v in results.items()),
        "", f"**bf16 takes {record['bf16_over_fp32_time']}x the time of float32.**", "",
    ]))  # fmt: skip


if __name__ == "__main__":
    main()
