"""The report stage: collect, render, write report.md, report.html and the plot PNGs."""

from __future__ import annotations

from pathlib import Path

from honed.config import ReportConfig
from honed.errors import HonedError
from honed.report import distill
from honed.report.collect import collect
from honed.report.render import build_rows, html_page, loss_curves, markdown, quality_plot


def report(cfg: ReportConfig) -> Path:
    """Write the report for cfg.dirs into cfg.output and return the HTML page's path."""
    if not cfg.dirs:
        raise HonedError("no directories to report on: honed report DIR [DIR ...]")
    variants = collect([Path(d) for d in cfg.dirs])
    if not variants:
        raise HonedError(
            f"no artifacts, eval summaries or bench results under {', '.join(cfg.dirs)}"
        )
    out = cfg.output
    out.mkdir(parents=True, exist_ok=True)
    rows = build_rows(variants, cfg.max_quality_drop)
    images = {
        "quality-vs-latency.png": quality_plot(rows, "latency", "median latency per query (s)"),
        "quality-vs-size.png": quality_plot(rows, "size_mb", "size on disk (MB)"),
    }
    images = {name: data for name, data in images.items() if data}
    for name, data in images.items():
        (out / name).write_bytes(data)
    images |= {f"loss-{k}.png": v for k, v in loss_curves(rows, out).items()}
    (out / "report.md").write_text(markdown(rows, images, cfg.title, distill.markdown(variants)))
    page = out / "report.html"
    page.write_text(html_page(rows, images, cfg.title, distill.html_section(variants)))
    return page
