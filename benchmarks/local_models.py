"""The benchmarks' real models on this machine, without the hub.

honed resolves a built-in name (`qwen2.5-coder-1.5b-instruct`, ...) to the GGUF file in the
shared fetch cache and, failing that, to its hub id. These machines reach no model hub, so
on a new machine a benchmark stopped at the first model it loaded, after the hub's retries.
This fetches each missing model up front with the workplace's `../shared/models/fetch`;
where that script is absent, honed goes to the hub as for any user.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from honed.models.resolve import BUILTINS, resolve

FETCH = Path(__file__).resolve().parents[2] / "shared" / "models" / "fetch"


def ensure_local(*names: str) -> None:
    """Every built-in name among `names` resolves to a local GGUF file (fetched if need be)."""
    for name in names:
        if name not in BUILTINS or resolve(name).kind == "gguf":
            continue
        if not FETCH.is_file():
            print(f"{name}: no local GGUF file and no {FETCH}: loading from the hub", flush=True)
            continue
        print(f"{name}: fetching with {FETCH}", flush=True)
        subprocess.run([str(FETCH), name], check=True, stdout=subprocess.DEVNULL)
