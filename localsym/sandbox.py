"""Run model-written Python in a child process: a wall-clock timeout, CPU and memory limits, a
fresh temporary working directory, an environment without the parent's variables (no secrets),
and Python's isolated mode. A failure or a hang is a result, never an exception."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass


@dataclass(frozen=True)
class RunResult:
    ok: bool
    returncode: int | None
    output: str  # the tail of stdout + stderr
    timed_out: bool = False


def _limits(cpu_seconds: int, memory_bytes: int):
    def apply():  # runs in the child, before exec
        import resource

        os.setsid()  # its own process group: a timeout kills everything it started
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))
    return apply


def run_python(code: str, timeout: float = 10.0, memory_mb: int = 1024) -> RunResult:
    """Run ``code`` with ``python -I`` in a temporary directory; ok when it exits 0 in time."""
    with tempfile.TemporaryDirectory(prefix="localsym-run-") as cwd:
        env = {"PATH": "/usr/bin:/bin", "HOME": cwd, "TMPDIR": cwd, "LANG": "C.UTF-8"}
        proc = subprocess.Popen([sys.executable, "-I", "-c", code], cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                preexec_fn=_limits(int(timeout) + 1, memory_mb << 20))
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, _ = proc.communicate()
            return RunResult(False, None, (out or "")[-2000:], timed_out=True)
        return RunResult(proc.returncode == 0, proc.returncode, (out or "")[-2000:])
