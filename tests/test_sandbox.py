"""Model-written code runs contained: each attack ends as a failed result, the caller goes on,
and nothing outside the sandbox changed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

from conftest import wait_until
from localsym.metrics import metric
from localsym.sandbox import containment, run_python

PROBLEM = json.loads(open(os.path.join(os.path.dirname(__file__), "..", "examples", "humaneval",
                                       "data", "train.jsonl")).readline())


def _processes() -> int:
    return len([p for p in os.listdir("/proc") if p.isdigit()])


def test_ordinary_code_runs_and_passes_its_tests():
    result = run_python("import math, re, itertools, collections\nprint(math.comb(5, 2))")
    assert result.ok and result.output.strip() == "10"
    assert metric("humaneval")({"code": PROBLEM["expected"]["reference"]},
                               PROBLEM["expected"]) == 1.0


def test_infinite_loop_is_killed_at_the_timeout():
    started = time.monotonic()
    result = run_python("while True:\n    pass", timeout=1.5)
    assert result.timed_out and not result.ok
    assert time.monotonic() - started < 10


def test_huge_allocation_fails_inside_the_memory_limit():
    result = run_python("x = bytearray(64 << 30)\nprint('allocated')", memory_mb=512)
    assert not result.ok and "MemoryError" in result.output and "allocated" not in result.output


@pytest.mark.parametrize("audit", [True, False], ids=["with-audit-hook", "os-limits-only"])
def test_fork_bomb_is_contained(audit):
    bomb = ("import os\nwhile True:\n    try:\n        os.fork()\n"
            "    except OSError:\n        pass\n")
    if not audit and not (containment()["pids_cgroup"] or containment()["process_rlimit"]):
        pytest.skip("no OS-level process limit here (root without a writable pids cgroup)")
    before = _processes()
    peak = [0]

    def watch():
        while not done:
            peak[0] = max(peak[0], _processes())
            time.sleep(0.05)
    done = False
    import threading

    watcher = threading.Thread(target=watch)
    watcher.start()
    result = run_python(bomb, timeout=3, audit=audit)
    done = True
    watcher.join()
    assert not result.ok
    assert peak[0] <= before + 40  # never more processes than the cap (plus this test's own)
    # ... and all of them gone afterwards
    assert wait_until(lambda: _processes() <= before + 2, seconds=10), _processes()


def test_writing_or_deleting_outside_its_directory_is_refused(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    outside = f"/tmp/localsym-escape-{uuid.uuid4().hex}"
    for code in (f"open({outside!r}, 'w').write('x')",
                 f"import os\nos.open({outside!r}, os.O_WRONLY | os.O_CREAT)",
                 f"import os\nos.remove({str(victim)!r})",
                 f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
                 f"import os\nos.symlink({str(victim)!r}, 'link')\nopen('link', 'w').write('x')",
                 "import subprocess\nsubprocess.run(['sh', '-c', 'echo x > /tmp/x'])",
                 "import ctypes\nctypes.CDLL(None).system(b'true')"):
        result = run_python(code)
        assert not result.ok and "sandbox:" in result.output, code
    assert not os.path.exists(outside) and victim.read_text() == "keep me"
    # inside its own directory it may write what it likes
    assert run_python("open('scratch.txt', 'w').write('ok')\nprint(open('scratch.txt').read())").ok


def test_no_network_and_no_inherited_secrets(monkeypatch):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    connect = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)"
    assert not run_python(connect).ok
    if containment()["network_namespace"]:  # the OS layer alone holds too
        assert not run_python(connect, audit=False).ok
    with pytest.raises(socket.timeout):
        server.accept()  # nobody ever connected
    server.close()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    result = run_python("import os\nprint(sorted(os.environ))")
    assert result.ok and "OPENAI_API_KEY" not in result.output and "sk-secret" not in result.output


def test_a_hostile_solution_scores_zero_and_the_caller_goes_on():
    score = metric("humaneval")
    for code in ("import os\nwhile True:\n    os.fork()", "while True:\n    pass",
                 "import os\nos.system('rm -rf /')", "raise SystemExit(0)",
                 "import os\nos._exit(0)"):
        expected = {**PROBLEM["expected"], "test": PROBLEM["expected"]["test"]}
        started = time.monotonic()
        assert score({"code": code}, expected) == 0.0, code
        assert time.monotonic() - started < 15
    assert subprocess.run(["true"]).returncode == 0  # the parent can still start processes


HARNESS = """
import json, os, sys
from localsym.sandbox import run_python
result = run_python(sys.argv[1], timeout=float(sys.argv[2]), audit=sys.argv[3] == "1")
print(json.dumps({"ok": result.ok, "output": result.output, "timed_out": result.timed_out}))
"""


def contained(code: str, audit: bool, timeout: float = 5) -> dict:
    """Run ``code`` in the sandbox from a harness process of its own: the harness is the
    process a hostile program would try to kill. Returns the result; fails if the harness
    died."""
    proc = subprocess.run([sys.executable, "-c", HARNESS, code, str(timeout), "1" if audit else "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"the process running the sandbox died: {proc.returncode} " \
                                 f"{proc.stderr[-500:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def os_layers(audit: bool, need: str) -> None:
    if not audit and not containment()[need]:
        pytest.skip(f"no {need} on this kernel: only the audit hook holds here")


@pytest.mark.parametrize("audit", [True, False], ids=["with-audit-hook", "os-layers-only"])
def test_the_sandbox_is_a_boundary_for_files(tmp_path, audit):
    os_layers(audit, "landlock_files")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    new = tmp_path / f"new-{uuid.uuid4().hex}"
    attacks = {
        "dir_fd": f"import os\nfd = os.open({str(tmp_path)!r}, os.O_RDONLY)\n"
                  f"os.write(os.open('victim.txt', os.O_WRONLY | os.O_TRUNC, dir_fd=fd), b'x')",
        "dir_fd create": f"import os\nfd = os.open({str(tmp_path)!r}, os.O_RDONLY)\n"
                         f"os.open({new.name!r}, os.O_WRONLY | os.O_CREAT, dir_fd=fd)",
        "symlink": f"import os\nos.symlink({str(victim)!r}, 'link')\nopen('link', 'w').write('x')",
        "hard link": f"import os\nos.link({str(victim)!r}, 'hard')\nopen('hard', 'w').write('x')",
        "rename out": f"open('x', 'w').write('x')\nimport os\nos.rename('x', {str(new)!r})",
        "proc fd": f"import os\nfd = os.open({str(tmp_path)!r}, os.O_RDONLY)\n"
                   f"open(f'/proc/self/fd/{{fd}}/victim.txt', 'w').write('x')",
    }
    for name, code in attacks.items():
        result = contained(code, audit)
        assert not result["ok"], name
    assert victim.read_text() == "keep me" and not new.exists()


@pytest.mark.parametrize("audit", [True, False], ids=["with-audit-hook", "os-layers-only"])
def test_the_code_cannot_signal_the_process_that_runs_it(audit):
    os_layers(audit, "landlock_signals")
    for code in ("import os, signal\nsignal.pidfd_send_signal(os.pidfd_open(os.getppid()), 9)",
                 "import os\nos.kill(os.getppid(), 9)",
                 "import os, signal\nos.killpg(os.getpgid(os.getppid()), 9)",
                 "import os, signal\nsignal.pthread_kill(0, 0)\nos.kill(1, 9)"):
        result = contained(code, audit)  # the harness survives, or this fails
        assert not result["ok"], code


def test_a_process_that_outlives_its_timeout_is_killed(tmp_path):
    if not containment()["pids_cgroup"]:
        pytest.skip("no pids cgroup here: a process that leaves its process group survives")
    marker = str(31000 + os.getpid() % 1000)
    code = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n"
            f"    os.execv('/bin/sleep', ['sleep', '{marker}'])\ntime.sleep(60)")
    result = contained(code, audit=False, timeout=2)
    assert result["timed_out"]
    assert wait_until(lambda: not [p for p in os.listdir("/proc")
                                   if p.isdigit() and _cmdline(p) == f"sleep {marker}"],
                      seconds=10)


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""
