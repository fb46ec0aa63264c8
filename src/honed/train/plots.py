"""loss.png: training and validation loss curves from metrics.jsonl."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(path: Path) -> list[dict]:
    """Records of a metrics.jsonl file (empty if it does not exist)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[key]) for r in records if key in r and math.isfinite(r[key])]
    return [p[0] for p in points], [p[1] for p in points]


def plot_loss(metrics: Path, out: Path, title: str) -> None:
    """Draw train and eval loss against step and save a PNG."""
    records = read_metrics(metrics)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for key, label, style in (("loss", "train", "-"), ("eval_loss", "validation", "o--")):
        steps, values = _series(records, key)
        if steps:
            ax.plot(steps, values, style, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
