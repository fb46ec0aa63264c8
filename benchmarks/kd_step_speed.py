"""A logits-mode distillation step with the student's LM head on every position against one
with the head on the scored positions only (`scored_forward` in src/honed/distill/kd.py),
in one run, on the same batches.

The student is Qwen2.5-Coder-0.5B-Instruct (float copy of the shared GGUF) with honed's LoRA
r=16 on all linear layers, batch 8, max_length 512, bf16 autocast, the real KDTrainer built by
honed's fine-tune stage on MBPP train rows (chat template, loss on the answers, batches of
similar length). Each batch is timed with both settings (forward + backward, no optimizer
step), in alternating order. The teacher's top-32 are random tensors of the right shape,
identical for both settings: the ratio is the student's side of a cached KD step.

    .venv/bin/python benchmarks/kd_step_speed.py [--batches 6]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from honed.config import FinetuneConfig
from honed.data import prepare_data
from honed.distill.kd import KDSettings, KDState, KDTrainer, Teacher, next_tokens
from honed.models.load import load_model
from honed.models.resolve import resolve
from honed.train.callbacks import RunFlags
from honed.train.finetune import lora_config
from honed.train.trainer import TrainSetup, build_sft_trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import provenance, publish  # noqa: E402

HERE = Path(__file__).resolve().parent
STUDENT = "qwen2.5-coder-0.5b-instruct"
HEADING = "## Distillation step: the student's LM head on the scored positions only"


class RandomTargets(KDState):
    """The teacher's top-k as seeded random tensors: no teacher, no cache."""

    def targets(
        self, input_ids: torch.Tensor, mask: torch.Tensor, vocab: int, cached: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(int(input_ids.sum()))
        shape = (*input_ids.shape, self.settings.top_k)
        return torch.randint(0, vocab, shape, generator=gen), torch.randn(shape, generator=gen)


def build(batch_size: int, out: Path) -> KDTrainer:
    """honed's KD trainer for the student, as `honed distill --mode logits` builds it."""
    cfg = FinetuneConfig(
        model=STUDENT,
        data="mbpp",
        method="lora",
        batch_size=batch_size,
        max_length=512,
        dtype="bfloat16",
        report_to="none",
    )
    loaded = load_model(resolve(STUDENT), dtype=cfg.dtype)
    data = prepare_data("mbpp", loaded.tokenizer, is_seq2seq=False, template="auto", seed=42)
    setup = TrainSetup(cfg, loaded.model, loaded.tokenizer, data.train, [], out, bf16=True)
    trainer = build_sft_trainer(setup, lora_config(cfg, loaded), KDTrainer)
    settings = KDSettings(alpha=0.5, kind="forward_kl", temperature=1.0, beta=0.5, top_k=32)
    trainer.kd = RandomTargets(settings, None, Teacher(STUDENT, "auto", False))  # type: ignore[arg-type]
    trainer.honed_flags = RunFlags()
    trainer.current_gradient_accumulation_steps = 1  # set by train(), which is not called
    return trainer


def timed_step(trainer: KDTrainer, batch: dict, trim: bool) -> float:
    trainer._logits_to_keep = trim
    trainer.model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    trainer.training_step(trainer.model, batch)
    return time.perf_counter() - start


def measure(trainer: KDTrainer, batches: int) -> dict:
    loader = iter(trainer.get_train_dataloader())
    rows = []
    timed_step(trainer, next(loader), trim=False)  # warm-up, not counted
    for n in range(batches):
        batch = next(loader)
        order = [False, True] if n % 2 == 0 else [True, False]
        seconds = {trim: timed_step(trainer, batch, trim) for trim in order}
        scored = next_tokens(batch["labels"]) != -100
        rows.append(
            {
                "positions": scored.numel(),
                "scored": int(scored.sum()),
                "every_position_s": round(seconds[False], 3),
                "scored_only_s": round(seconds[True], 3),
            }
        )
    full = sum(r["every_position_s"] for r in rows)
    trimmed = sum(r["scored_only_s"] for r in rows)
    return {
        "batches": rows,
        "every_position_s": round(full, 2),
        "scored_only_s": round(trimmed, 2),
        "speedup": round(full / trimmed, 3),
        "per_batch_speedup_median": round(
            statistics.median(r["every_position_s"] / r["scored_only_s"] for r in rows), 3
        ),
        "scored_share": round(
            sum(r["scored"] for r in rows) / sum(r["positions"] for r in rows), 3
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=6, help="batches timed (each both ways)")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    random.seed(0)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as out:
        result = measure(build(args.batch_size, Path(out)), args.batches)
    record = {
        "benchmark": "kd_step_speed",
        **provenance(threads=torch.get_num_threads()),
        "student": STUDENT,
        "batch_size": args.batch_size,
        **result,
    }
    publish(record, "kd_step_speed.json", HEADING, markdown(record))


def markdown(record: dict) -> str:
    return "\n".join(
        [
            HEADING,
            "",
            f"Measured {record['date']} on {record['machine']['cpu']}, "
            f"{record['machine']['threads']} threads; `{record['command']}`. "
            f"{record['student']} with LoRA r=16, batch {record['batch_size']}, bf16 autocast, "
            "honed's KDTrainer on MBPP train batches (chat template, loss on the answers); "
            "each batch timed both ways (forward + backward), teacher targets random.",
            "",
            "| LM head on | seconds |",
            "|---|---|",
            f"| every position | {record['every_position_s']} |",
            f"| the scored positions only | {record['scored_only_s']} |",
            "",
            f"**{record['speedup']}x** per step (median over batches "
            f"{record['per_batch_speedup_median']}x); the scored positions (answer tokens) "
            f"were {record['scored_share']:.0%} of all (prompts and padding are not scored).",
            "",
        ]
    )


if __name__ == "__main__":
    main()
