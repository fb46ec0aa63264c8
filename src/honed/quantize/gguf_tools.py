"""llama.cpp's own GGUF converter, from the llama-cpp-python source that builds the runtime.

The llama-cpp-python source distribution vendors llama.cpp, with `convert_hf_to_gguf.py`, its
`conversion` package and `gguf-py` at the exact version the installed runtime reads. honed
extracts those three once into a tools directory (`$HONED_TOOLS`, default
`~/.cache/honed-tools`) and runs the converter in its own process, so its bundled `gguf-py`
never mixes with the `gguf` package transformers uses.

    python -m honed.quantize.gguf_tools   # fetch ahead of time (make install does)
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from honed.errors import HonedError

PACKAGE = "llama-cpp-python"
KEEP = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")


def llama_cpp_version() -> str:
    """The installed llama-cpp-python version (the converter must match it)."""
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError as exc:
        raise HonedError(
            "GGUF export needs llama-cpp-python: pip install llama-cpp-python==0.3.36"
        ) from exc


def tools_dir() -> Path:
    """Where the converter of the installed llama.cpp lives."""
    root = Path(os.environ.get("HONED_TOOLS", Path.home() / ".cache" / "honed-tools"))
    return root / f"llama.cpp-{llama_cpp_version()}"


def converter_script() -> Path:
    """convert_hf_to_gguf.py for the installed llama.cpp, fetched on first use."""
    script = tools_dir() / "convert_hf_to_gguf.py"
    if not script.is_file():
        fetch_converter(tools_dir())
    return script


def fetch_converter(target: Path) -> None:
    """Download the llama-cpp-python sdist from the package index and extract the converter."""
    version = llama_cpp_version()
    print(f"honed: fetching llama.cpp's GGUF converter ({PACKAGE} {version} source, ~75 MB)")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
               "--no-binary", ":all:", f"{PACKAGE}=={version}", "-d", tmp]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True)
        archives = list(Path(tmp).glob("*.tar.gz"))
        if done.returncode != 0 or not archives:
            last = (done.stderr.strip().splitlines() or ["no archive downloaded"])[-1]
            raise HonedError(
                f"cannot fetch llama.cpp's GGUF converter ({last}): check access to the "
                f"package index, or unpack the {PACKAGE} {version} sdist's vendor/llama.cpp "
                f"into {target}"
            )
        _extract(archives[0], target)


def _extract(archive: Path, target: Path) -> None:
    """Unpack the converter files of vendor/llama.cpp into target (atomically)."""
    work = target.with_name(target.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            _, _, rel = member.name.partition("/vendor/llama.cpp/")
            if rel and rel.startswith(KEEP) and (member.isfile() or member.isdir()):
                member.name = rel
                tar.extract(member, work, filter="data")
    if not (work / "convert_hf_to_gguf.py").is_file():
        raise HonedError(f"{archive.name} holds no vendor/llama.cpp/convert_hf_to_gguf.py")
    shutil.rmtree(target, ignore_errors=True)
    work.rename(target)


def run_converter(model_dir: Path, outfile: Path, outtype: str) -> None:
    """Convert an HF model directory to GGUF with llama.cpp's converter (its own process)."""
    script = converter_script()
    env = {**os.environ, "PYTHONPATH": str(script.parent)}
    env.pop("NO_LOCAL_GGUF", None)  # use the converter's own gguf-py
    cmd = [sys.executable, str(script), str(model_dir), "--outfile", str(outfile),
           "--outtype", outtype]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise HonedError(f"llama.cpp's GGUF converter failed: {_converter_error(done.stderr)}")


def _converter_error(stderr: str) -> str:
    """The one line of the converter's output that says what went wrong."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if "not supported" in line or "NotImplementedError" in line:
            return line + " (this architecture or tokenizer is unknown to llama.cpp's converter)"
    return lines[-1] if lines else "no message"


if __name__ == "__main__":
    print(converter_script())
