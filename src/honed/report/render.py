"""Render collected variants: a table, quality-vs-latency and quality-vs-size plots with the
Pareto front, loss curves of training runs; Markdown with PNGs, and one self-contained HTML."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from honed.report.collect import Variant, headline, lineage_names  # noqa: E402
from honed.train.plots import plot_loss  # noqa: E402

COLUMNS = ("variant", "lineage", "method", "vs source (KL, greedy)", "parameters (M)",
           "size (MB)", "quality", "latency median (s)",
           "latency p95 (s)", "decode tok/s", "peak memory (MB)", "flag")  # fmt: skip


@dataclass
class Row:
    """One table row, with the numbers the plots need."""

    variant: Variant
    quality: tuple[str, float] | None
    size_mb: float | None
    latency: float | None
    flag: str

    def cells(self) -> list[str]:
        b = self.variant.bench or {}
        lat = b.get("latency_s") or {}
        q = f"{self.quality[1]:.4f} ({self.quality[0]})" if self.quality else "-"
        return [
            self.variant.name, " → ".join(lineage_names(self.variant)), self.variant.method,
            self.variant.export_check() or "-",
            fmt_number(self.variant.parameters() / 1e6 if self.variant.parameters() else None, 1),
            fmt_number(self.size_mb, 0), q,
            fmt_number(lat.get("median"), 3), fmt_number(lat.get("p95"), 3),
            fmt_number((b.get("decode_tok_s") or {}).get("median"), 1),
            fmt_number(b.get("peak_rss_mb"), 0),
            self.flag or ("failed: " + b["error"] if "error" in b else ""),
        ]  # fmt: skip


def fmt_number(value: float | None, digits: int) -> str:
    """A number with fixed digits for a table cell; "-" when missing."""
    return "-" if value is None else f"{value:.{digits}f}"


def build_rows(variants: dict[str, Variant], max_drop: float) -> list[Row]:
    """Rows in a stable order, each flagged when it lost more than max_drop to its parent."""
    rows, label = [], headline(variants)
    for v in sorted(variants.values(), key=lambda v: (len(lineage_names(v)), v.name)):
        quality, size = v.quality(label), v.size_bytes()
        latency = ((v.bench or {}).get("latency_s") or {}).get("median")
        rows.append(Row(v, quality, size / 1e6 if size else None, latency, ""))
    by_key = {r.variant.key: r for r in rows}
    for r in rows:
        flags = [f"export: {w}" for w in r.variant.export_warnings()]
        parent = by_key.get(r.variant.parent_key or "")
        if r.quality and parent and parent.quality and parent.quality[0] == r.quality[0]:
            drop = parent.quality[1] - r.quality[1]
            if drop > max_drop:
                flags.insert(0, f"lost {drop * 100:.1f} points vs {parent.variant.name}")
        r.flag = "; ".join(flags)
    return rows


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats (lower x and higher y), by increasing x."""
    front, best = [], float("-inf")
    for i in sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1])):
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def quality_plot(rows: list[Row], attr: str, xlabel: str) -> bytes | None:
    """PNG of quality against latency or size, Pareto front marked (None without data)."""
    pts = [(getattr(r, attr), r.quality[1], r.variant.name) for r in rows
           if r.quality and getattr(r, attr) is not None]  # fmt: skip
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], color="#4c72b0", zorder=3)
    for x, y, name in pts:
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    front = [pts[i] for i in pareto([(p[0], p[1]) for p in pts])]
    ax.plot([p[0] for p in front], [p[1] for p in front], "--", color="#dd8452",
            marker="o", label="Pareto front", zorder=2)  # fmt: skip
    ax.set_xlabel(xlabel)
    ax.set_ylabel(next((r.quality[0] for r in rows if r.quality), "quality"))
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def _png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def loss_curves(rows: list[Row], out: Path) -> dict[str, bytes]:
    """loss.png of every training run among the variants (drawn anew from metrics.jsonl)."""
    curves = {}
    for r in rows:
        metrics = r.variant.path / "metrics.jsonl" if r.variant.path else None
        if metrics and metrics.is_file():
            target = out / f"loss-{r.variant.name}.png"
            plot_loss(metrics, target, r.variant.name)
            curves[r.variant.name] = target.read_bytes()
    return curves


def markdown(rows: list[Row], images: dict[str, bytes], title: str, sections: str = "") -> str:
    lines = [f"# {title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    lines += ["", sections] if sections else [""]
    lines += [f"![{name}]({name})\n" for name in images]
    return "\n".join(lines)


def html_page(rows: list[Row], images: dict[str, bytes], title: str, sections: str = "") -> str:
    """One self-contained page: inline CSS, the table, plots as data URIs."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join(
        "<tr" + (' class="flag"' if r.flag else "") + ">"
        + "".join(f"<td>{html.escape(c)}</td>" for c in r.cells()) + "</tr>"
        for r in rows
    )  # fmt: skip
    figures = "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(data).decode()}"><figcaption>{html.escape(name)}</figcaption></figure>'
        for name, data in images.items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: left; }}
th {{ background: #f3f3f3; }}
tr.flag td {{ background: #fde2e1; }}
figure {{ display: inline-block; margin: 1rem 1rem 0 0; }}
img {{ max-width: 720px; border: 1px solid #eee; }}
</style></head>
<body><h1>{html.escape(title)}</h1>
<table id="variants"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
{sections}
<section id="plots">{figures}</section>
</body></html>
"""
