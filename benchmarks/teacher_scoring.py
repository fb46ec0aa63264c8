"""The teacher's top-k in logits mode: transformers (float32, the GGUF dequantized) against
llama.cpp (the GGUF file itself, `honed distill --teacher-backend llama.cpp`), on one machine.

Rows: N MBPP train examples as `honed distill --data mbpp --max-samples N` draws and
formats them (chat template, prompt and reference answer), tokenized by the teacher's
tokenizer. Each scorer runs
in its own process (so its peak memory is its own) through honed's own teacher classes
(`honed.distill.kd.Teacher` and `LlamaCppTeacher`), rows in batches of 8 as the stage warms
its cache; measured: load and scoring wall time, tokens scored per second, peak RSS. Then the
two top-k are compared position by position: the top-1 token agreement, the overlap of the
top-k sets, and the KL from transformers' top-k distribution (renormalized, temperature 1) to
llama.cpp's over the union of ids, the other's logits of an id it lacks taken as its own
k-th's.

    .venv/bin/python benchmarks/teacher_scoring.py [--teacher qwen2.5-coder-1.5b-instruct] \
        [--rows 16] [--top-k 32]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from local_models import ensure_local  # noqa: E402
from results_md import provenance, publish  # noqa: E402

HEADING = "## Distillation: the teacher's top-k by transformers and by llama.cpp"


def rows_of(teacher: str, n: int) -> list[list[int]]:
    """The token ids of n MBPP train examples, drawn and formatted as the stage does."""
    from honed.data import prepare_data
    from honed.models.load import gguf_float_dir, load_tokenizer
    from honed.models.resolve import resolve

    tok = load_tokenizer(str(gguf_float_dir(resolve(teacher).path)))
    data = prepare_data("mbpp", tok, is_seq2seq=False, max_samples=n)
    texts = [
        tok.apply_chat_template([*e["prompt"], *e["completion"]], tokenize=False)
        for e in data.train[:n]
    ]
    return [tok(text, add_special_tokens=False)["input_ids"] for text in texts]


def vocab_of(teacher: str) -> int:
    """The teacher's logits width (what the stage passes: the student's, the same here)."""
    from honed.models.load import gguf_float_dir
    from honed.models.resolve import resolve

    config = gguf_float_dir(resolve(teacher).path) / "config.json"
    return int(json.loads(config.read_text())["vocab_size"])


def score(scorer: str, job: dict) -> dict:
    """One scorer over every row (run in its own process): timings, memory, its top-k saved."""
    from safetensors.torch import save_file

    from honed.distill import kd
    from honed.models.resolve import resolve

    teacher, rows, k = job["teacher"], job["rows"], job["k"]
    start = time.perf_counter()
    if scorer == "transformers":
        model = kd.Teacher(teacher, "float32", False)
        model.model()
    else:
        model = kd.LlamaCppTeacher(resolve(teacher).path, n_ctx=1024, threads=None)
        model.backend()
    loaded = time.perf_counter()
    found = []
    for at in range(0, len(rows), 8):
        found += model.top_k(rows[at : at + 8], k, job["vocab"])
    done = time.perf_counter()
    tensors = {f"{n}.i": ids.contiguous() for n, (ids, _) in enumerate(found)}
    tensors |= {f"{n}.v": values.contiguous() for n, (_, values) in enumerate(found)}
    save_file(tensors, job["out"])
    return {
        "load_s": loaded - start,
        "score_s": done - loaded,
        "tokens": sum(map(len, rows)),
        "tokens_per_s": sum(map(len, rows)) / (done - loaded),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def compare(a: Path, b: Path, rows: int) -> dict:
    """Top-1 agreement, top-k overlap and KL(a || b) over every scored position."""
    from safetensors.torch import load_file

    x, y = load_file(str(a)), load_file(str(b))
    agree, overlap, kl, positions = 0, 0.0, 0.0, 0
    for n in range(rows):
        ia, va, ib, vb = x[f"{n}.i"], x[f"{n}.v"].float(), y[f"{n}.i"], y[f"{n}.v"].float()
        agree += int((ia[:, 0] == ib[:, 0]).sum())
        for p in range(ia.shape[0]):
            ids = torch.unique(torch.cat([ia[p], ib[p]]))
            la, lb = on_ids(ids, ia[p], va[p]), on_ids(ids, ib[p], vb[p])
            pa, log_pa, log_pb = la.softmax(-1), la.log_softmax(-1), lb.log_softmax(-1)
            kl += float((pa * (log_pa - log_pb)).sum())
            overlap += len(set(ia[p].tolist()) & set(ib[p].tolist())) / ia.shape[1]
        positions += ia.shape[0]
    return {
        "positions": positions,
        "top1_agreement": agree / positions,
        "topk_overlap": overlap / positions,
        "mean_kl": kl / positions,
    }


def on_ids(ids: torch.Tensor, own: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Logits over ids: a scorer's own where it has the id, else its k-th (its smallest)."""
    out = torch.full((len(ids),), float(logits.min()))
    where = {int(i): n for n, i in enumerate(own)}
    for m, i in enumerate(ids.tolist()):
        if i in where:
            out[m] = logits[where[i]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--top-k", type=int, default=32)
    parser.add_argument("--scorer", help=argparse.SUPPRESS)  # internal: one scorer's process
    parser.add_argument("--job", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scorer:
        return print(json.dumps(score(args.scorer, json.loads(args.job.read_text()))))
    ensure_local(args.teacher)
    rows, vocab = rows_of(args.teacher, args.rows), vocab_of(args.teacher)
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for scorer in ("transformers", "llama.cpp"):
            job = Path(tmp) / f"{scorer}.json"
            out = Path(tmp) / f"{scorer}.safetensors"
            job.write_text(json.dumps({"teacher": args.teacher, "rows": rows, "k": args.top_k,
                                       "vocab": vocab, "out": str(out)}))  # fmt: skip
            done = subprocess.run(
                [sys.executable, __file__, "--scorer", scorer, "--job", str(job)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            results[scorer] = json.loads(done.stdout.strip().splitlines()[-1])
        agreement = compare(
            Path(tmp) / "transformers.safetensors", Path(tmp) / "llama.cpp.safetensors", len(rows)
        )
    record = {
        "benchmark": "teacher_scoring",
        "teacher": args.teacher,
        **provenance(("llama-cpp-python",)),
        "rows": len(rows),
        "top_k": args.top_k,
        "results": results,
        "agreement": agreement,
        "speedup": results["transformers"]["score_s"] / results["llama.cpp"]["score_s"],
    }
    publish(record, "teacher_scoring.json", HEADING, markdown(record))


def markdown(record: dict) -> str:
    m, a = record["machine"], record["agreement"]
    rows = [
        "| scorer | load (s) | scoring (s) | tokens/s | peak RSS (GB) |",
        "|---|---|---|---|---|",
    ]
    for name, r in record["results"].items():
        rows.append(f"| {name} | {r['load_s']:.1f} | {r['score_s']:.1f} | "
                    f"{r['tokens_per_s']:.1f} | {r['peak_rss_gb']:.2f} |")  # fmt: skip
    return "\n".join([
        HEADING, "",
        f"Measured {record['date']} on {m['cpu']}, {m['cores']} cores; `{record['command']}`; "
        f"teacher {record['teacher']} (transformers: its GGUF dequantized to float32; "
        f"llama.cpp: the GGUF file), {record['rows']} MBPP train examples as `honed distill "
        f"--data mbpp --max-samples {record['rows']}` draws and formats them "
        f"({record['results']['llama.cpp']['tokens']} tokens), top-{record['top_k']} at every "
        "position, each scorer in its own process, rows in batches of 8.",
        "", *rows, "",
        f"llama.cpp scores at **{record['speedup']:.2f}x** the speed of transformers. Position "
        f"by position ({a['positions']}): top-1 token the same at {a['top1_agreement']:.1%}, "
        f"top-{record['top_k']} sets overlapping {a['topk_overlap']:.1%}, mean KL from "
        f"transformers' top-k distribution to llama.cpp's {a['mean_kl']:.4f} nats.",
        "",
    ])  # fmt: skip


if __name__ == "__main__":
    main()
