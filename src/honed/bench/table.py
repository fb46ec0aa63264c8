"""bench.json -> a Markdown table (the classic CPU latency report, one row per model)."""

from __future__ import annotations

from typing import Any

from honed.bench.machine import CONTENTION, WHO_TOOK

HEADER = (
    "| model | backend | size (MB) | load (s) | latency median (s) | p90 | p95 | p99 | std "
    "| TTFT median (s) | prompt tok/s | decode tok/s | batched tok/s | peak RSS (MB) "
    "| bandwidth (GB/s) | roofline tok/s | share |"
)


def _num(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def row(r: dict[str, Any]) -> str:
    """One model's table row (or its error)."""
    if "error" in r:
        return f"| {r['model']} | failed: {r['error']} |" + " |" * 15
    lat, roof = r["latency_s"], r["roofline"]
    batched = (r.get("batched") or {}).get("tok_s")
    size = r["size_bytes"] / 1e6 if r.get("size_bytes") else None
    cells = [
        r["model"], r["backend"], _num(size, 0), _num(r["load_s"], 1),
        _num(lat["median"], 3), _num(lat["p90"], 3), _num(lat["p95"], 3), _num(lat["p99"], 3),
        _num(lat["std"], 3), _num(r["ttft_s"]["median"], 3), _num(r["prompt_tok_s"]["median"], 1),
        _num(r["decode_tok_s"]["median"], 1), _num(batched, 1), _num(r["peak_rss_mb"], 0),
        _num(roof.get("bandwidth_gbs"), 1), _num(roof.get("bound_tok_s"), 1),
        "-" if roof.get("share") is None else f"{roof['share']:.0%}",
    ]  # fmt: skip
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _bandwidth(m: dict[str, Any]) -> str:
    """The bandwidth figure with its spread, when the record has one."""
    text = f"{m['bandwidth_gbs']:.1f} GB/s"
    b = m.get("bandwidth")
    if b and len(b.get("readings", [])) > 1:
        return text + (
            f" (median of {len(b['readings'])} readings, one before the first model and one "
            f"after each, {min(b['readings']):.1f} to {max(b['readings']):.1f}; each the higher "
            f"of the sum and max kernels' medians, {b['passes']} passes; a row's share uses the "
            "two readings around it)"
        )
    if b:
        kernels = " and ".join(b.get("kernels", {})) or "read"
        text += (
            f" (median of {kernels} passes, {b['passes']} in all, {b['min']:.1f} to {b['max']:.1f})"
        )
    return text


def markdown(record: dict[str, Any]) -> str:
    """The whole bench.md."""
    m, cfg = record["machine"], record["config"]
    lines = [
        f"# honed bench, {record['date']}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} threads used, GPU: "
        f"{m['gpu'] or 'none'}; measured read bandwidth {_bandwidth(m)}.",
        f"Command: `{record['command']}`",
        f"{len(record['prompts'])} prompts x {cfg['runs']} runs after {cfg['warmup']} warm-up, "
        f"greedy, at most {cfg['max_new_tokens']} new tokens; each model in its own process.",
        "",
        HEADER,
        "|" + "---|" * 17,
        *[row(r) for r in record["results"]],
        "",
        "Roofline: decode reads every weight once per token, so bandwidth / weight bytes per "
        "token bounds decode tokens/s; share is the median decode speed over that bound, with "
        "the bandwidth read just before and after the model ran (the bandwidth column).",
        "",
        *[f"{line}\n" for line in contention_notes(record)],
    ]
    return "\n".join(lines)


NOTES = {  # the most CPU time taken away seen, where no measurement was warned about
    "cpu_steal": "CPU steal (time the host took away) during the runs: at most {:.1%}.",
    "cpu_others": "CPU time other processes used during the runs: at most {:.1%}.",
}


def contention_warnings(record: dict[str, Any]) -> list[str]:
    """One line per measurement slowed down by CPU time taken away from it: by the host
    (steal) or by other processes on the same cores."""
    named = [("the bandwidth measurement", record["machine"].get("bandwidth") or {})]
    named += [(r["model"], r) for r in record["results"]]
    return [
        f"{WHO_TOOK[key]} {r[key]:.0%} of the CPU time while {name} ran, so its speeds read "
        "low: re-run on a quiet machine"
        for name, r in named
        for key, limit in CONTENTION.items()
        if (r.get(key) or 0) > limit
    ]


def contention_notes(record: dict[str, Any]) -> list[str]:
    """The warnings, or else the most CPU time taken away seen, of each kind recorded."""
    warnings = contention_warnings(record)
    if warnings:
        return [f"**Warning:** {w}." for w in warnings]
    runs = [record["machine"].get("bandwidth") or {}, *record["results"]]
    notes = []
    for key, note in NOTES.items():
        seen = [r[key] for r in runs if r.get(key) is not None]
        notes += [note.format(max(seen))] if seen else []
    return notes
