"""The report's distillation tables: teacher, student before and student after, side by side.

A distilled artifact's manifest names its teacher and the student it started from; both are
variants of the report when they were evaluated or benched under the same reference. A model
that was measured only through an export (e.g. the student converted to GGUF first) is shown
with that export's numbers, named in the row.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from honed.report.collect import Variant, headline, model_key
from honed.report.render import fmt_number

ROLES = ("teacher", "student before", "student after")
COLUMNS = ("role", "model", "parameters (M)", "size (MB)", "quality", "latency median (s)",
           "decode tok/s", "x teacher speed")  # fmt: skip


@dataclass
class Side:
    """One model of a distillation and the variant whose numbers stand for it."""

    role: str
    ref: str
    measured: Variant | None


def _has_numbers(v: Variant) -> bool:
    return bool(v.evals or v.bench)


def measured(variants: dict[str, Variant], ref: str) -> Variant | None:
    """The variant of ref, or else its first measured export (a child made from it)."""
    key = model_key(ref)
    own = variants.get(key)
    if own is not None and _has_numbers(own):
        return own
    children = [v for v in variants.values() if v.parent_key == key and _has_numbers(v)]
    return sorted(children, key=lambda v: v.name)[0] if children else own


def distillations(variants: dict[str, Variant]) -> list[list[Side]]:
    """Teacher, student before and after of every distilled artifact among the variants."""
    found = []
    for v in sorted(variants.values(), key=lambda v: v.name):
        record = (v.manifest or {}).get("distill")
        if (v.manifest or {}).get("stage") != "distill" or not record:
            continue
        refs = (record["teacher"]["ref"], record["student_init"]["ref"], str(v.path or v.key))
        sides = zip(ROLES, refs, strict=True)
        found.append([Side(role, ref, measured(variants, ref)) for role, ref in sides])
    return found


def _decode(v: Variant | None) -> float | None:
    return ((v.bench or {}).get("decode_tok_s") or {}).get("median") if v else None


def cells(side: Side, teacher_speed: float | None, label: str | None) -> list[str]:
    v = side.measured
    name = side.ref.rstrip("/").rsplit("/", 1)[-1]
    if v is not None and v.key != model_key(side.ref):
        name += f" (measured as {v.name})"
    quality = v.quality(label) if v else None
    params, size = (v.parameters(), v.size_bytes()) if v else (None, None)
    latency = ((v.bench or {}).get("latency_s") or {}).get("median") if v else None
    speed = _decode(v)
    ratio = speed / teacher_speed if speed and teacher_speed else None
    return [side.role, name, fmt_number(params / 1e6 if params else None, 1),
            fmt_number(size / 1e6 if size else None, 0),
            f"{quality[1]:.4f} ({quality[0]})" if quality else "-", fmt_number(latency, 3),
            fmt_number(speed, 1), fmt_number(ratio, 2) + ("x" if ratio else "")]  # fmt: skip


def tables(variants: dict[str, Variant]) -> list[list[list[str]]]:
    """Each distillation as rows of cells."""
    out, label = [], headline(variants)
    for sides in distillations(variants):
        speed = _decode(sides[0].measured)
        out.append([cells(side, speed, label) for side in sides])
    return out


def title(rows: list[list[str]]) -> str:
    """teacher -> student after (names as in the rows)."""
    return f"{rows[0][1]} → {rows[2][1].split(' (measured as')[0]}"


def markdown(variants: dict[str, Variant]) -> str:
    parts = []
    for rows in tables(variants):
        head = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines = ["| " + " | ".join(r) + " |" for r in rows]
        parts += [f"## Distillation: {title(rows)}", "", *head, *lines, ""]
    return "\n".join(parts)


def html_section(variants: dict[str, Variant]) -> str:
    parts = []
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    for rows in tables(variants):
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
        )
        parts.append(
            f"<h2>Distillation: {html.escape(title(rows))}</h2>"
            f'<table class="distill"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
        )
    return "".join(parts)
