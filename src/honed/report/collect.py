"""Find artifacts, eval summaries and bench results under directories and join them by model.

A variant is one model: an artifact directory, a .gguf file or a model name. Eval summaries
(summary.json) and bench rows (bench.json) name the model they measured; those names are
matched to artifacts by resolved path, so `honed report runs/` puts each variant's lineage,
quality, latency, size and memory on one row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from honed.artifacts import MANIFEST, lineage
from honed.errors import HonedError


@dataclass
class Variant:
    """Everything known about one model variant."""

    key: str
    name: str
    manifest: dict[str, Any] | None = None
    evals: list[dict[str, Any]] = field(default_factory=list)
    bench: dict[str, Any] | None = None
    path: Path | None = None

    @property
    def parent_key(self) -> str | None:
        parent = (self.manifest or {}).get("parent") or {}
        ref = parent.get("path") or parent.get("ref")
        return model_key(ref) if ref else None

    @property
    def method(self) -> str:
        m = self.manifest or {}
        config = m.get("config") or {}
        method = str(config.get("method") or m.get("stage") or ("base" if not m else m.get("kind")))
        if m.get("stage") == "distill":
            return f"distill {(m.get('distill') or {}).get('mode', '')} ({method})"
        return method

    def qualities(self) -> dict[str, float]:
        """Headline numbers by label ("pass@1 TASK", else "METRIC TASK": a text task's first)."""
        found: dict[str, float] = {}
        for summary in self.evals:
            if "pass@1" in summary.get("pass@k", {}):
                found.setdefault(f"pass@1 {summary['task']}", float(summary["pass@k"]["pass@1"]))
                continue
            metrics = summary.get("metrics") or {}
            first = next(((k, v) for k, v in metrics.items() if isinstance(v, int | float)), None)
            if first:
                found.setdefault(f"{first[0]} {summary['task']}", float(first[1]))
        return found

    def quality(self, label: str | None = None) -> tuple[str, float] | None:
        """The number under label, or (no label) the first pass@1, else the first metric."""
        found = self.qualities()
        if label is not None:
            return (label, found[label]) if label in found else None
        ranked = sorted(found, key=lambda k: not k.startswith("pass@1"))
        return (ranked[0], found[ranked[0]]) if ranked else None

    def export_check(self) -> str | None:
        """An export's check against its source (honed quantize): mean next-token KL and
        greedy agreement (near-tie flips counted as agreeing), or None."""
        checks = (self.manifest or {}).get("checks") or {}
        kl = (checks.get("kl") or {}).get("mean_kl")
        agreement = checks.get("agreement") or {}
        agree = agreement.get("agreement", agreement.get("exact_match"))
        if kl is None or agree is None:
            return None
        return f"KL {kl:.4f}, greedy {agree:.0%}"

    def export_warnings(self) -> list[str]:
        """The warnings of an export's check against its source (EOS changed, low agreement)."""
        return list(((self.manifest or {}).get("checks") or {}).get("warnings") or [])

    def parameters(self) -> int | None:
        """Weights, as the bench counted them from the files' headers (else unknown)."""
        count = (self.bench or {}).get("parameters")
        return int(count) if count else None

    def size_bytes(self) -> int | None:
        if self.bench and self.bench.get("size_bytes"):
            return int(self.bench["size_bytes"])
        if self.path:
            return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
        return _builtin_size(self.key)


def _builtin_size(ref: str) -> int | None:
    """Size of the local file behind a model name (a built-in's GGUF), if there is one."""
    from honed.models.resolve import resolve

    try:
        source = resolve(ref)
    except HonedError:
        return None
    path = Path(source.path)
    return path.stat().st_size if source.kind == "gguf" and path.is_file() else None


def model_key(ref: str) -> str:
    """A model reference as a join key: the resolved path when it exists, else the name."""
    path = Path(ref).expanduser()
    return str(path.resolve()) if path.exists() else ref


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def collect(dirs: list[Path]) -> dict[str, Variant]:
    """Every variant found under dirs, keyed by model_key."""
    missing = [str(d) for d in dirs if not d.exists()]
    if missing:
        raise HonedError(f"nothing at {', '.join(missing)}: pass directories with honed outputs")
    variants: dict[str, Variant] = {}

    def variant(ref: str) -> Variant:
        key = model_key(ref)
        return variants.setdefault(key, Variant(key, Path(ref.rstrip("/")).name or ref))

    for root in dirs:
        for manifest in sorted(root.rglob(MANIFEST)):
            if (data := _read(manifest)) and data.get("honed_manifest"):
                v = variant(str(manifest.parent))
                v.manifest, v.path = data, manifest.parent.resolve()
        for summary in sorted(root.rglob("summary.json")):
            if (data := _read(summary)) and "task" in data and "model" in data:
                variant(str(data["model"])).evals.append(data)
        for bench in sorted(root.rglob("bench.json")):
            for row in (_read(bench) or {}).get("results", []):
                variant(str(row["model"])).bench = row
    return variants


def headline(variants: dict[str, Variant]) -> str | None:
    """The quality label most variants have (pass@1 first on ties): the one compared."""
    from collections import Counter

    counts = Counter(label for v in variants.values() for label in v.qualities())
    if not counts:
        return None
    return max(counts, key=lambda k: (counts[k], k.startswith("pass@1"), k))


def lineage_names(v: Variant) -> list[str]:
    """Names from the root model to this variant."""
    if v.path is None:
        return [v.name]
    chain = [m.get("parent", {}).get("ref") for m in reversed(lineage(v.path))]
    return [Path(str(c)).name for c in chain if c] + [v.name]
