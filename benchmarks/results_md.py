"""RESULTS.md: each benchmark script rewrites its own section (found by its heading)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def replace_section(heading: str, section: str) -> None:
    """Replace the RESULTS.md section that starts with `heading` (or append it)."""
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    start = text.find(heading)
    if start >= 0:
        end = text.find("\n## ", start + 3)
        rest = text[end + 1 :] if end >= 0 else ""
        text = text[:start] + section.rstrip("\n") + ("\n\n" + rest if rest else "\n")
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)


def publish(record: dict, name: str, heading: str, section: str) -> None:
    """Print a run's record, keep it as results/NAME, and put its section in RESULTS.md."""
    print(json.dumps(record, indent=2))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / name).write_text(json.dumps(record, indent=2))
    replace_section(heading, section)


def provenance(libraries: tuple[str, ...] = (), **machine: object) -> dict:
    """What every record says of its run: when, the command, the machine (its CPU and usable
    cores, plus `machine`: threads used, a GPU), library versions (honed's own list plus
    `libraries`)."""
    from datetime import datetime, timezone

    from honed.artifacts import library_versions
    from honed.bench.machine import cpu_name, usable_cores

    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        "machine": {"cpu": cpu_name(), "cores": usable_cores(), **machine},
        "versions": library_versions(libraries),
    }


def command_line() -> str:
    """The command that ran this script, quoted so that it can be pasted back (an empty
    argument shows as '')."""
    return shlex.join([Path(sys.executable).name, *sys.argv])


def print_walls(out: dict[str, dict], done: int, total: int) -> None:
    """Progress to stderr: 'done/total: N s mode, ...' from each mode's running wall_s."""
    walls = [f"{entry['wall_s']:.0f} s {mode}" for mode, entry in out.items()]
    print(f"{done}/{total}: {', '.join(walls)}", file=sys.stderr, flush=True)
