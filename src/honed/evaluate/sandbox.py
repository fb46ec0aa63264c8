"""Run untrusted generated code: the ONLY place in honed where model output is executed.

Each program runs in a fresh Python process inside a bubblewrap (``bwrap``) sandbox:

- the host filesystem is mounted read-only; ``/tmp`` is a small private tmpfs;
- a new network namespace with only its own loopback, so no traffic leaves the
  sandbox, not even to the host's ``127.0.0.1``; new pid, ipc and uts namespaces too;
- resource limits (CPU seconds, address space, processes, file size) are set inside
  the sandbox just before the program starts;
- a wall-clock timeout kills bwrap's process group; the sandbox's pid 1 dies with bwrap
  (``--die-with-parent``) and takes every process in its pid namespace with it, which
  also happens when the program exits and leaves children behind.

When honed runs as root, the kernel does not enforce ``RLIMIT_NPROC``, so the program
is run as ``nobody`` (65534) inside a user namespace of its own (``setpriv`` and
``unshare`` from util-linux); the process limit then counts only that sandbox's
processes, which contains a fork bomb without starving other sandboxes.

``unsafe_no_sandbox=True`` skips bwrap (still rlimits and process-group kill, in a
scratch working directory): only for users who ask for it explicitly.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO

NOBODY = 65534
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
_MB = 1024 * 1024

# Runs inside the sandbox: set rlimits, tell the host the sandbox started, then replace
# itself with a pristine interpreter that reads the program from stdin.
_BOOT = """\
import os, resource, sys
fd = int(sys.argv[1])
for name, soft, hard in zip(sys.argv[2::3], sys.argv[3::3], sys.argv[4::3]):
    resource.setrlimit(getattr(resource, name), (int(soft), int(hard)))
os.write(fd, b"started")
os.close(fd)
os.execv(sys.executable, [sys.executable, "-I", "-"])
"""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for one program run."""

    timeout_s: float = 10.0  # wall clock; the whole sandbox is killed after this
    cpu_s: int = 10  # RLIMIT_CPU: CPU seconds per process
    memory_mb: int = 1024  # RLIMIT_AS: address space per process
    max_procs: int = 64  # RLIMIT_NPROC: processes in the sandbox
    file_size_mb: int = 16  # RLIMIT_FSIZE per file; also the size of /tmp (bwrap >= 0.7)


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one program run."""

    status: str  # "passed" | "failed" | "timeout" | "error"
    message: str  # last line of stderr, or why it timed out / could not start
    duration_s: float


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot run on this machine."""


def _unavailable(reason: str) -> SandboxUnavailable:
    return SandboxUnavailable(
        f"honed: cannot run generated code safely: {reason}. Install bubblewrap "
        "(apt-get install bubblewrap) or pass --unsafe-no-sandbox to run it unsandboxed."
    )


def check_sandbox() -> None:
    """Raise SandboxUnavailable unless a trivial program runs and passes in the sandbox."""
    result = run_program("pass", SandboxLimits(timeout_s=30.0))
    if result.status != "passed":
        raise _unavailable(f"bwrap failed to start a sandbox ({result.message})")


def _rlimit_args(limits: SandboxLimits) -> list[str]:
    """(name, soft, hard) triples for _BOOT; the CPU hard limit (SIGKILL) comes 1 s after
    the soft one (SIGXCPU), so running out of CPU time is reported as such."""
    triples = [
        ("RLIMIT_CPU", limits.cpu_s, limits.cpu_s + 1),
        ("RLIMIT_AS", limits.memory_mb * _MB, limits.memory_mb * _MB),
        ("RLIMIT_NPROC", limits.max_procs, limits.max_procs),
        ("RLIMIT_FSIZE", limits.file_size_mb * _MB, limits.file_size_mb * _MB),
        ("RLIMIT_CORE", 0, 0),
    ]
    return [str(item) for triple in triples for item in triple]


def _expose_args(paths: set[str]) -> list[str]:
    """bwrap args that make ``paths`` reachable for nobody when an ancestor is not.

    Each ancestor that others cannot traverse (e.g. a 0700 /root holding a pyenv
    interpreter) is hidden under an empty tmpfs and only the needed child is bound back.
    """
    hidden: dict[Path, set[Path]] = {}
    for path in paths:
        parts = Path(path).parts
        for depth in range(1, len(parts)):
            ancestor = Path(*parts[:depth])
            if not ancestor.stat().st_mode & 0o001:
                hidden.setdefault(ancestor, set()).add(Path(*parts[: depth + 1]))
    args: list[str] = []
    for ancestor in sorted(hidden, key=lambda p: len(p.parts)):
        args += ["--perms", "0755", "--tmpfs", str(ancestor)]
        for child in sorted(hidden[ancestor]):
            args += ["--ro-bind", str(child), str(child)]
    return args


@lru_cache
def _supports_tmpfs_size(bwrap: str) -> bool:
    """bwrap >= 0.7 can cap the size of a tmpfs; older ones only get the per-file limit."""
    usage = subprocess.run([bwrap, "--help"], capture_output=True, text=True, check=False)
    return "--size" in usage.stdout + usage.stderr


def _interpreter_paths() -> set[str]:
    """What the sandboxed interpreter needs to see: its binary and its prefixes (a venv)."""
    return {os.path.realpath(sys.executable), sys.prefix, sys.base_prefix, sys.exec_prefix}


def _rebind_under_tmp(paths: set[str]) -> list[str]:
    """Bind back, read-only, what the private /tmp would hide (a checkout and venv in /tmp).

    bwrap creates missing parents as 0700, so they are made first as 0755 for nobody.
    """
    inside = sorted(p for p in paths if Path(p).is_relative_to("/tmp") and Path(p) != Path("/tmp"))
    parents = sorted({str(a) for p in inside for a in Path(p).parents if a.is_relative_to("/tmp")})
    args = [a for d in parents if d != "/tmp" for a in ("--perms", "0755", "--dir", d)]
    return args + [a for p in inside for a in ("--ro-bind", p, p)]


def _sandbox_prefix(limits: SandboxLimits) -> list[str]:
    """The bwrap (and, as root, privilege-dropping) command that wraps the interpreter."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise _unavailable("bwrap was not found on PATH")
    args = [bwrap, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
    if _supports_tmpfs_size(bwrap):
        args += ["--size", str(limits.file_size_mb * _MB)]
    args += ["--perms", "1777", "--tmpfs", "/tmp"]
    needed = _interpreter_paths()
    args += _rebind_under_tmp(needed)
    args += ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    args += ["--die-with-parent", "--new-session", "--chdir", "/tmp", "--clearenv"]
    args += ["--setenv", "PATH", SANDBOX_PATH, "--setenv", "HOME", "/tmp"]
    if os.geteuid() != 0:
        return [*args, "--"]
    setpriv, unshare = shutil.which("setpriv"), shutil.which("unshare")
    if setpriv is None or unshare is None:
        raise _unavailable("running as root needs setpriv and unshare (util-linux)")
    args += [*_expose_args(needed), "--"]
    args += [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    args += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    return [*args, unshare, "--user", "--"]


def _tail(stream: IO[bytes], limit: int = 4096) -> str:
    """Last non-empty line of what the program wrote to stderr, at most 300 characters."""
    stream.seek(0, os.SEEK_END)
    stream.seek(max(0, stream.tell() - limit))
    lines = stream.read().decode(errors="replace").strip().splitlines()
    return lines[-1].strip()[:300] if lines else ""


def _killed_by(returncode: int) -> signal.Signals | None:
    """The signal that ended the program (bwrap reports it as exit code 128 + signal)."""
    number = -returncode if returncode < 0 else returncode - 128
    try:
        return signal.Signals(number)
    except ValueError:
        return None


def _classify(returncode: int, stderr: str, limits: SandboxLimits) -> tuple[str, str]:
    """Status and message for a program that ran to its end (not killed by the timeout)."""
    if returncode == 0:
        return "passed", ""
    sig = _killed_by(returncode)
    if sig == signal.SIGXCPU:
        return "timeout", f"CPU time limit of {limits.cpu_s}s exceeded"
    if stderr:
        return "failed", stderr
    if sig is not None:
        return "failed", f"killed by {sig.name}"
    return "failed", f"exit code {returncode}"


def run_program(
    program: str, limits: SandboxLimits = SandboxLimits(), *, unsafe_no_sandbox: bool = False
) -> ExecResult:
    """Run ``program`` (Python source) in a fresh sandboxed process and report the outcome.

    Exit code 0 is "passed"; any other exit is "failed"; running past ``timeout_s`` (or
    the CPU limit) is "timeout"; a sandbox that could not start is "error". Raises
    SandboxUnavailable when bwrap is missing (unless ``unsafe_no_sandbox``).
    """
    prefix = [] if unsafe_no_sandbox else _sandbox_prefix(limits)
    with tempfile.TemporaryDirectory(prefix="honed-run-") as scratch, ExitStack() as stack:
        stdin, stderr, marker = (
            stack.enter_context(open(os.path.join(scratch, name), "w+b"))
            for name in ("in", "err", "ok")
        )
        stdin.write(program.encode())
        stdin.seek(0)
        boot = [sys.executable, "-I", "-c", _BOOT, str(marker.fileno())]
        start = time.monotonic()
        proc = subprocess.Popen(
            [*prefix, *boot, *_rlimit_args(limits)],
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            pass_fds=(marker.fileno(),),
            cwd=scratch if unsafe_no_sandbox else None,
            env={"PATH": SANDBOX_PATH, "HOME": scratch},
            start_new_session=True,
        )
        timed_out = _wait(proc, limits.timeout_s)
        duration = time.monotonic() - start
        return _result(proc.returncode, timed_out, duration, stderr, marker, limits)


def _wait(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Wait for ``proc``; on timeout kill its whole process group. True if it timed out."""
    try:
        proc.wait(timeout=timeout_s)
        return False
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def _result(
    returncode: int,
    timed_out: bool,
    duration: float,
    stderr: IO[bytes],
    marker: IO[bytes],
    limits: SandboxLimits,
) -> ExecResult:
    if timed_out:
        return ExecResult("timeout", f"timed out after {limits.timeout_s:g}s", duration)
    marker.seek(0)
    message = _tail(stderr)
    if marker.read() != b"started":
        return ExecResult("error", message or "the sandbox failed to start", duration)
    status, message = _classify(returncode, message, limits)
    return ExecResult(status, message, duration)


class SandboxPool:
    """Run programs on ``workers`` threads, each driving one sandboxed process at a time.

    Submitting returns at once, so execution overlaps with generation. ``results()``
    waits for everything submitted and returns the outcomes by key.
    """

    def __init__(
        self,
        workers: int = 2,
        limits: SandboxLimits = SandboxLimits(),
        unsafe_no_sandbox: bool = False,
    ) -> None:
        self.limits = limits
        self.unsafe_no_sandbox = unsafe_no_sandbox
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox")
        self._futures: dict[Hashable, Future[ExecResult]] = {}
        self._lock = threading.Lock()

    def submit(self, key: Hashable, program: str) -> Future[ExecResult]:
        """Queue ``program`` under ``key`` (unique per pool) and return its future."""
        with self._lock:
            if key in self._futures:
                raise ValueError(f"honed: sandbox key {key!r} was already submitted")
            future = self._executor.submit(
                run_program, program, self.limits, unsafe_no_sandbox=self.unsafe_no_sandbox
            )
            self._futures[key] = future
        return future

    def results(self) -> dict[Hashable, ExecResult]:
        """Wait for every submitted program; outcomes by key, in submission order."""
        with self._lock:
            futures = dict(self._futures)
        return {key: future.result() for key, future in futures.items()}

    def close(self) -> None:
        """Wait for running programs to finish and stop the workers."""
        self._executor.shutdown(wait=True)

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
