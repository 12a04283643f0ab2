"""Hostile input, round four (issue 39): each finding reproduced as a user meets it, through the
real CLI where the finding was seen there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEEP_TOOL = '''
def deep(text: str) -> list:
    """A list nested 100,000 deep."""
    out = []
    for _ in range(100_000):
        out = [out]
    return out
'''


def cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "localsym.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "LOCALSYM_CACHE_DIR": str(cwd / "cache")})


def one_row_task(tmp_path: Path, config: dict | None = None, **node) -> Path:
    """A user's task of one row (question -> answer) on the stub model, in ``tmp_path``: the
    agent (``node``: more of the node's fields), the data, and config.yaml (``config``: more of
    it); returns the config's path."""
    (tmp_path / "data").mkdir(exist_ok=True)
    row = json.dumps({"id": "a", "inputs": {"question": "hi"}, "expected": {"answer": "x"}})
    (tmp_path / "data" / "rows.jsonl").write_text(row + "\n")
    (tmp_path / "agent.yaml").write_text(json.dumps({
        "name": "t", "inputs": [{"name": "question"}], "tools": node.pop("declared", []),
        "nodes": [{"name": "answer", "inputs": ["question"], "outputs": [{"name": "answer"}],
                   **node}]}))
    (tmp_path / "config.yaml").write_text(json.dumps({
        "agent": "agent.yaml", "metric": "exact_match", "models": {"agent": "stub"},
        "dataset": {"train": "data/rows.jsonl", "val": "data/rows.jsonl"}, **(config or {})}))
    return tmp_path / "config.yaml"


def test_a_tool_result_nested_too_deeply_is_a_failed_call_in_run_and_train(tmp_path):
    (tmp_path / "tools.py").write_text(DEEP_TOOL)
    one_row_task(tmp_path, {"tools": ["tools.py:deep"], "train": {"max_steps": 1}},
                 declared=[{"name": "deep", "description": "d"}], tools=["deep"],
                 program={"outputs": {"answer": "deep(text=question)"}})
    done = cli("run", "agent.yaml", "question=hi", "--tool", "tools.py:deep", "--model", "stub",
               "--trace", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-1500:]
    assert "nested too deeply" in done.stdout + done.stderr
    assert "internal error" not in done.stderr
    done = cli("train", "config.yaml", "--quiet", cwd=tmp_path)
    assert done.returncode == 0 and "internal error" not in done.stderr, done.stderr[-1500:]


@pytest.mark.parametrize("value, accepted", [(True, False), ("0.5", False), (0.5, True),
                                             (1, True), (None, False), ([1], False)])
def test_feedback_scores_of_every_type(tmp_path, value, accepted):
    from fastapi.testclient import TestClient

    from conftest import stub_evolving_agent
    from localsym.deploy.serve import create_app

    agent = stub_evolving_agent(tmp_path, ROOT / "examples" / "arithmetic")
    try:
        client = TestClient(create_app(agent), raise_server_exceptions=False,
                            base_url="http://127.0.0.1:8765")
        run = client.post("/run", json={"inputs": {"question": "1+1"}}).json()
        answer = client.post("/feedback", json={"id": run["id"], "score": value})
        assert (answer.status_code == 200) == accepted, answer.text
        if not accepted:
            body = answer.json()
            assert set(body) == {"error"} and "score" in body["error"] and \
                "Fix:" in body["error"], body
        # a route that does not exist answers in the service's shape too, not {"detail": ...}
        missing = client.get("/no-such-route")
        assert missing.status_code == 404 and "Fix:" in missing.json()["error"]
    finally:
        agent.close()


def test_a_closed_pipe_is_not_a_disk_problem(tmp_path):
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written (``| head`` done early)
    done = subprocess.run([sys.executable, "-m", "localsym.cli", "models"], stdout=write,
                          stderr=subprocess.PIPE, text=True, timeout=120, cwd=tmp_path)
    os.close(write)
    assert done.returncode == 141 and done.stderr == "", done.stderr


def test_patience_true_is_not_one(tmp_path):
    one_row_task(tmp_path, {"train": {"patience": True}})
    done = cli("train", "config.yaml", "--quiet", cwd=tmp_path)
    assert done.returncode == 2 and "train.patience" in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1  # one line


def _listener(tmp_path: Path):
    """A unix socket listening at a path outside the sandbox: what model-written code must not
    reach. Returns (socket, path)."""
    import socket

    path = str(tmp_path / "outside.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    server.settimeout(0.5)
    return server, path


def _nobody_came(server) -> bool:
    import socket

    try:
        server.accept()
        return False
    except socket.timeout:
        return True


CFFI_CONNECT = """
import _cffi_backend as B
libc = B.load_library(None)
i = B.new_primitive_type("int")
socket = libc.load_function(B.new_function_type((i, i, i), i, False), "socket")
fd = socket(1, 1, 0)  # AF_UNIX, SOCK_STREAM
print("socket", fd, B.get_errno())
"""

C_CONNECT = r'''
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
int try_connect(const char *path) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) return -errno;
    struct sockaddr_un a; memset(&a, 0, sizeof a); a.sun_family = AF_UNIX;
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    return connect(fd, (struct sockaddr *)&a, sizeof a) == 0 ? 0 : -errno;
}
'''


def test_no_route_to_a_socket_outside_cffi_an_extension_or_the_os_layers_alone(tmp_path):
    """The kernel refuses every socket call (seccomp): cffi with the audit hook on, native code
    the test compiled, plain Python with the audit hook off; and what the code writes into its
    working directory cannot be loaded as native code (noexec)."""
    import base64
    import shutil

    from localsym.sandbox import containment, run_python

    held = containment()
    if not held["seccomp_sockets"]:
        pytest.skip("no seccomp here (libseccomp missing): RELIABILITY.md says which layer holds")
    server, path = _listener(tmp_path)
    try:
        out = run_python(CFFI_CONNECT.replace("PATH", repr(path)), timeout=20).output
        assert "socket -1 1" in out, out  # EPERM from the kernel, with the audit hook on
        plain = run_python(f"import socket\ns = socket.socket(socket.AF_UNIX)\n"
                           f"s.connect({path!r})", timeout=20, audit=False)
        assert not plain.ok and "Operation not permitted" in plain.output
        if shutil.which("gcc"):
            lib = tmp_path / "ext" / "connect.so"
            lib.parent.mkdir()
            (tmp_path / "connect.c").write_text(C_CONNECT)
            subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib),
                            str(tmp_path / "connect.c")], check=True, timeout=60)
            native = run_python(f"import ctypes\nlib = ctypes.CDLL({str(lib)!r})\n"
                                f"print('errno', -lib.try_connect({path.encode()!r}))",
                                timeout=20, audit=False, readable=(str(lib.parent),))
            assert "errno 1" in native.output, native.output
            data = base64.b64encode(lib.read_bytes()).decode()
            dropped = run_python(f"import base64, ctypes\nopen('x.so', 'wb').write("
                                 f"base64.b64decode({data!r}))\nctypes.CDLL('./x.so')",
                                 timeout=20, audit=False)
            assert not dropped.ok and ("failed to map" in dropped.output or
                                       "Permission denied" in dropped.output), dropped.output
        assert _nobody_came(server)
    finally:
        server.close()


PROBLEM = {"entry_point": "add", "test": "def check(candidate):\n"
           "    assert candidate(1, 2) == 3\n    assert candidate(20, 22) == 42\n"}
READ_OWN_MEMORY = r'''
import re
def add(a, b):
    return 0
found = set()
with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb") as mem:
    for line in maps:
        start, end = (int(x, 16) for x in line.split()[0].split("-"))
        if "rw" not in line.split()[1] or end - start > 1 << 26:
            continue
        try:
            mem.seek(start)
            found |= set(re.findall(rb"localsym-completed-[0-9a-f]{32}", mem.read(end - start)))
        except OSError:
            pass
import os, sys
for secret in found:
    print(secret.decode())
sys.stdout.flush()
os._exit(0)
'''
WALK_TO_THE_TESTS = r'''
import sys
def add(a, b):
    f = sys._getframe(1)
    while f is not None:
        if f.f_code.co_name == "check":  # its constants: each call's arguments, then what
            ints = [c for c in f.f_code.co_consts if type(c) is int]  # it expects
            table = {(ints[i], ints[i + 1]): ints[i + 2] for i in range(0, len(ints) - 2, 3)}
            return table.get((a, b), 0)
        f = f.f_back
    return 0
'''


@pytest.mark.parametrize("cheat", [READ_OWN_MEMORY, WALK_TO_THE_TESTS])
def test_humaneval_is_not_passed_by_reading_memory_or_walking_to_the_tests(cheat):
    from localsym.metrics.humaneval import humaneval

    assert humaneval({"code": "def add(a, b):\n    return a + b\n"}, PROBLEM) == 1.0
    assert humaneval({"code": cheat}, PROBLEM) == 0.0


def test_a_pattern_holds_beside_a_long_bound_on_the_real_model(tmp_path):
    """outlines-core decodes a string with both a pattern and a length bound by its length
    alone: the bound is folded into the pattern, so the embedded model cannot write 'Hello'."""
    (tmp_path / "pm.py").write_text(
        "from pydantic import BaseModel, Field\n"
        "class A(BaseModel):\n"
        "    answer: str = Field(pattern=r'^[a-z]+$', max_length=64)\n")
    done = subprocess.run([sys.executable, "-m", "localsym.cli", "generate",
                           "Say hello world in a sentence.", "--schema", "pm:A",
                           "--max-tokens", "24", "--cache-dir", str(tmp_path / "cache")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-1500:]
    answer = json.loads(done.stdout)["answer"]
    assert answer and answer.isalpha() and answer.islower(), answer


def test_the_stub_model_says_it_cannot_honour_a_pattern_instead_of_report_it():
    from pydantic import BaseModel, Field

    from localsym.errors import InvalidOutputError
    from localsym.lm.stub import StubLM

    class Code(BaseModel):
        answer: str = Field(pattern=r"^[A-Z]{3}-\d{4}$")

    with pytest.raises(InvalidOutputError) as err:
        StubLM().generate([{"role": "user", "content": "a code"}], Code)
    assert "stub model" in str(err.value) and "report it" not in str(err.value)


@pytest.mark.parametrize("case", ["unsupported uri", "sqlite skinny", "empty experiment",
                                  "torn summary", "server down"])
def test_each_tracking_failure_is_one_line_and_a_bounded_wait(tmp_path, case):
    pytest.importorskip("mlflow")
    import time

    run_dir = tmp_path / "run"
    (tmp_path / "data").mkdir()
    row = json.dumps({"id": "a", "inputs": {"a": "Ada", "b": "Lovelace"},
                      "expected": {"answer": "Ada L."}})
    (tmp_path / "data" / "rows.jsonl").write_text(row + "\n")
    (tmp_path / "agent.yaml").write_text(json.dumps({
        "name": "t", "inputs": [{"name": "a"}, {"name": "b"}],
        "nodes": [{"name": "f", "inputs": ["a", "b"], "outputs": [{"name": "answer"}]}]}))
    (tmp_path / "config.yaml").write_text(json.dumps({
        "agent": "agent.yaml", "metric": "exact_match", "models": {"agent": "stub"},
        "dataset": {"train": "data/rows.jsonl", "val": "data/rows.jsonl"}}))
    assert cli("train", "config.yaml", "--quiet", "--run-dir", str(run_dir),
               cwd=tmp_path).returncode == 0
    args = {"unsupported uri": ["--mlflow", "gopher://example/x"],
            "sqlite skinny": ["--mlflow", f"sqlite:///{tmp_path}/m.db"],
            "empty experiment": ["--experiment", " "],
            "torn summary": [],
            "server down": ["--mlflow", "http://127.0.0.1:9"]}[case]
    if case == "torn summary":
        (run_dir / "summary.json").write_text('{"name": "t", "val_')
    start = time.monotonic()
    done = cli("track", str(run_dir), *args, cwd=tmp_path, timeout=600)
    assert time.monotonic() - start < 120  # a server that is down is not retried for minutes
    lines = [x for x in done.stderr.splitlines() if x.startswith("localsym:")]
    if case == "sqlite skinny" and done.returncode == 0:
        return  # the full mlflow package is installed here: sqlite works
    assert done.returncode == 2 and len(lines) == 1 and "Fix:" in lines[0], done.stderr[-1500:]
    assert "internal error" not in done.stderr


def test_a_stub_run_is_estimated_as_instant(tmp_path):
    one_row_task(tmp_path)
    done = cli("train", "config.yaml", "--estimate", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert "the stub model, no model time" in first, first
    figures = json.loads(done.stdout[done.stdout.index("{"):])
    assert figures["seconds"] == round(figures["rehearsal_seconds"], 1) < 30  # its own work


def test_papercuts_a_hanging_tool_a_yaml_error_and_a_csv_field_limit_say_what_they_are(
        tmp_path, caplog):
    import logging
    import time as clock

    from localsym.agent.tools import ToolRegistry

    registry = ToolRegistry()

    @registry.register(timeout=0.2)
    def sleepy(text: str) -> str:
        """Never answers in time."""
        clock.sleep(3)
        return text

    with caplog.at_level(logging.WARNING, logger="localsym"):
        assert not registry.call("sleepy", {"text": "a"}).ok
        registry.call("sleepy", {"text": "b"})
    warned = [r.getMessage() for r in caplog.records if "sleepy" in r.getMessage()]
    assert len(warned) == 1 and "hang" in warned[0]
    (tmp_path / "bad.yaml").write_text("agent: agent.yaml\ndataset: {train: [a, b\n")
    done = cli("train", "bad.yaml", cwd=tmp_path)
    assert done.returncode == 2 and "at line 3, column 1" in done.stderr, done.stderr
    (tmp_path / "big.csv").write_text("id,question\n1," + "x" * 200_000 + "\n")
    (tmp_path / "agent.yaml").write_text(json.dumps({
        "name": "t", "inputs": [{"name": "question"}],
        "nodes": [{"name": "answer", "inputs": ["question"], "outputs": [{"name": "answer"}]}]}))
    (tmp_path / "c.yaml").write_text(json.dumps({
        "agent": "agent.yaml", "models": {"agent": "stub"},
        "dataset": {"train": "big.csv", "val": "big.csv",
                    "fields": {"id": "id", "inputs": {"question": "question"}}}}))
    done = cli("train", "c.yaml", cwd=tmp_path)
    assert done.returncode == 2 and "field limit" in done.stderr and "UTF-8" not in \
        done.stderr, done.stderr


def test_the_generated_sweep_of_round_four_breaks_no_promise():
    """scripts/fuzz_errors.py's round-four families, a small sample in CI: tool results of
    every shape (deep, cyclic, huge, not JSON), string schemas with a pattern and a long bound
    on the stub, tracking stores and names; feedback scores of every type are in its service
    sweep (tests/test_hostile_two.py)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from fuzz_errors import run_round_four, run_service

    for part in (run_round_four(cases=6, seed=7), run_service(per_endpoint=12, seed=11)):
        for name, row in part.items():
            assert not row["broken"], (name, row["broken"][:3])
