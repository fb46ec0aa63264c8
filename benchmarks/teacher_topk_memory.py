"""Peak memory of the teacher's top-k pass: one forward over a whole batch against forwards
over groups of at most `kd.TEACHER_TOKENS` padded positions (Teacher.top_k in
src/honed/distill/kd.py), on the same rows.

Each setting runs in a fresh process: it loads Qwen2.5-Coder-1.5B-Instruct (the logits
pair's teacher, float32 on a CPU, as `honed distill` loads it), resets the kernel's peak
resident memory (`/proc/self/clear_refs`), runs the top-32 over the batch and reads the peak
back (VmHWM), after one 16-token pass has brought the memory-mapped weights in. The batch
is the `--rows` longest MBPP train rows in the chat template, as `honed distill` warms its
cache (batches of similar length, so the longest batch is the largest). Also checks that
every setting returns the same ids. Prints and saves the record and puts its section in
RESULTS.md.

    .venv/bin/python benchmarks/teacher_topk_memory.py [--rows 8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_models import ensure_local  # noqa: E402
from results_md import provenance, publish  # noqa: E402

TEACHER = "qwen2.5-coder-1.5b-instruct"
HEADING = "## Distillation: the teacher's top-k in groups of rows, peak memory"
SETTINGS = {
    "one forward over the batch (before)": 10**9,
    "groups of 2048 positions": 2048,
    "groups of 1024 positions (honed)": 0,  # kd.TEACHER_TOKENS as shipped
}


def rows_of(tokenizer: object, n: int, max_length: int) -> list[list[int]]:
    """The n longest MBPP train rows, chat template, truncated as training truncates."""
    from honed.data import prepare_data

    data = prepare_data("mbpp", tokenizer, is_seq2seq=False)
    rows = [
        tokenizer.apply_chat_template(
            ex["prompt"] + ex["completion"], tokenize=True, return_dict=True
        )["input_ids"][:max_length]
        for ex in data.train
    ]
    return sorted(rows, key=len)[-n:]


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no {field} in /proc/self/status")


def child(budget: int, n_rows: int, out: Path) -> None:
    """Load the teacher, then measure one top-k pass over the rows."""
    import torch

    from honed.distill import kd
    from honed.models.load import load_tokenizer, weights_dir
    from honed.models.resolve import resolve

    if budget:
        kd.TEACHER_TOKENS = budget
    teacher = kd.Teacher(TEACHER, "float32", False)
    model = teacher.model()
    rows = rows_of(load_tokenizer(weights_dir(resolve(TEACHER))), n_rows, 512)
    vocab = model.get_output_embeddings().weight.shape[0]
    teacher.top_k([rows[0][:16]], 32, vocab)  # fault the mmapped weights in first
    loaded = rss_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    start = time.perf_counter()
    top = teacher.top_k(rows, 32, vocab)
    wall = time.perf_counter() - start
    record = {
        "rows": len(rows),
        "positions": sum(len(r) for r in rows),
        "longest": max(len(r) for r in rows),
        "teacher_tokens": kd.TEACHER_TOKENS,
        "rss_after_load_mb": round(loaded),
        "peak_during_top_k_mb": round(rss_mb("VmHWM")),
        "top_k_wall_s": round(wall, 1),
        "threads": torch.get_num_threads(),
    }
    out.write_text(json.dumps(record))
    torch.save([ids for ids, _ in top], out.with_suffix(".ids.pt"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return child(args.child, args.rows, args.out)
    import torch

    ensure_local(TEACHER)
    results, ids = {}, {}
    work = Path(__file__).resolve().parent / "results"
    for name, budget in SETTINGS.items():
        out = work / f".teacher_topk_{budget}.json"
        cmd = [sys.executable, __file__, "--rows", str(args.rows), "--child", str(budget)]
        subprocess.run([*cmd, "--out", str(out)], check=True)
        results[name] = json.loads(out.read_text())
        ids[name] = torch.load(out.with_suffix(".ids.pt"))
        out.unlink()
        out.with_suffix(".ids.pt").unlink()
        print(name, results[name], file=sys.stderr)
    first, *others = ids.values()
    same = all(torch.equal(a, b) for other in others for a, b in zip(first, other, strict=True))
    record = {"benchmark": "teacher_topk_memory", "teacher": TEACHER, **provenance(),
              "same_top_ids": same, "settings": results}  # fmt: skip
    publish(record, "teacher_topk_memory.json", HEADING, section(record))


def section(record: dict) -> str:
    lines = [
        HEADING, "",
        f"Measured {record['date']} on {record['machine']['cpu']}; `{record['command']}`: "
        f"the top-32 of {TEACHER} (float32) over the longest MBPP train rows in the chat "
        "template, each setting in a fresh process after loading the teacher and one "
        "16-token pass (which brings its memory-mapped weights in); peak resident "
        "memory during the pass (VmHWM, reset after loading). Same top ids in all: "
        f"{record['same_top_ids']}.", "",
        "| setting | rows | positions | longest | RSS after load (MB) | peak in top-k (MB) "
        "| above load (MB) | wall (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for name, r in record["settings"].items():
        lines.append(
            f"| {name} | {r['rows']} | {r['positions']} | {r['longest']} "
            f"| {r['rss_after_load_mb']} | {r['peak_during_top_k_mb']} "
            f"| {r['peak_during_top_k_mb'] - r['rss_after_load_mb']} | {r['top_k_wall_s']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
