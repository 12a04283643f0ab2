"""HumanEval's metric: the generated code run against the problem's tests, in the sandbox."""

from __future__ import annotations

import os
import threading

from localsym.sandbox import TAIL, RunResult, run_python


# The two sides of ``run_tests``: the solution answers calls read from one pipe on the other, one
# line each (the arguments as Python literals; the result as its repr, or E: and why), and the
# tests call it through a proxy that reads the result back as a literal, nothing else.
_SERVE = """

def _localsym_serve(fn, calls, results):
    import os
    answer = os.fdopen(results, "wb", buffering=0)
    for line in os.fdopen(calls, "rb"):
        try:
            args = eval(line, {{"__builtins__": {{}}}},
                        {{"inf": float("inf"), "nan": float("nan")}})
            out = "R:" + repr(fn(*args))
        except BaseException as err:
            out = "E:" + type(err).__name__
        answer.write((out.replace("\\n", " ") + "\\n").encode("utf-8", "replace"))

_localsym_serve({entry}, {calls}, {results})
"""
_PROXY = """
def {entry}(*args, _calls=__import__("os").fdopen({calls}, "wb", buffering=0),
            _results=__import__("os").fdopen({results}, "rb"), _ast=__import__("ast")):
    _calls.write((repr(args).replace("\\n", " ") + "\\n").encode())
    line = _results.readline().decode("utf-8", "replace")
    if not line.startswith("R:"):
        raise RuntimeError("the solution failed: " + (line[2:].strip() or "it stopped"))
    tree = _ast.parse(line[2:], mode="eval")
    for node in _ast.walk(tree):
        if isinstance(node, _ast.Name) and node.id in ("inf", "nan"):
            node.__class__, node.value = _ast.Constant, float(node.id)
    return _ast.literal_eval(tree)

"""


def run_tests(solution: str, entry: str, tests: str, timeout: float = 10.0) -> RunResult:
    """Run ``tests`` contained, calling ``entry`` of ``solution`` contained in another process:
    the two share a pipe each way and nothing else, so the solution never holds the tests, what
    they expect or the secret that attests their completion (``completed``: the tests returned
    normally); it sees the arguments of each call and answers with a plain value."""
    calls_r, calls_w = os.pipe()
    results_r, results_w = os.pipe()
    box: dict[str, RunResult] = {}
    server = threading.Thread(target=lambda: box.update(solution=run_python(
        solution + _SERVE.format(entry=entry, calls=calls_r, results=results_w),
        timeout=timeout, fds=(calls_r, results_w))), daemon=True)
    try:
        server.start()
    except BaseException:
        for fd in (calls_r, results_w):
            os.close(fd)
        raise
    result = run_python(_PROXY.format(entry=entry, calls=calls_w, results=results_r) + tests,
                        timeout=timeout, fds=(calls_w, results_r))
    server.join(timeout + 5)
    solved = box.get("solution")
    if solved is not None and not result.completed and solved.output.strip():
        result = RunResult(result.ok, result.returncode, (solved.output.strip() + "\n" +
                                                          result.output)[-TAIL:],
                           result.timed_out, result.completed)
    return result



def _parts(outputs: dict, expected: dict) -> tuple[str, str, str]:
    """The solution's code (a body alone put under its header), its entry point, the tests."""
    code = str(outputs.get("code", ""))
    entry = expected["entry_point"]
    if f"def {entry}" not in code and "prompt" in expected:  # a body only: put it under its header
        code = expected["prompt"] + code
    tests = f"{expected['test']}\n\ncheck({entry})\n"
    return code, entry, tests


def _run_tests(outputs: dict, expected: dict):
    """The tests run in a process of their own, calling the solution in another (see
    ``run_tests``): they pass only if they return normally, which their guard attests with a
    secret the solution's process never holds (an early exit(0), a printed marker, reading
    memory or walking to the tests' frame cannot pass); the results they compare are plain
    values read back as literals (an object whose __eq__ says yes to anything never reaches
    them)."""
    code, entry, tests = _parts(outputs, expected)
    if not entry.isidentifier():
        raise ValueError(f"entry_point {entry!r} is not a function name")
    result = run_tests(code, entry, tests, timeout=10)
    return result, result.ok and result.completed


def humaneval(outputs: dict, expected: dict) -> float:
    """1.0 if the generated ``code`` passes the problem's tests (run in the sandbox of
    ``localsym.sandbox``), else 0.0. ``expected`` holds ``entry_point`` and ``test``."""
    return 1.0 if _run_tests(outputs, expected)[1] else 0.0


def explain_humaneval(outputs: dict, expected: dict) -> str:
    result, passed = _run_tests(outputs, expected)
    if passed:
        return "the code passes the tests"
    if result.timed_out:
        return "the code did not finish within 10 s"
    if result.ok:
        return "the program exited before the tests ran to the end"
    if result.output.strip():
        return "the tests failed: " + result.output.strip().splitlines()[-1][:300]
    return f"the tests failed (exit {result.returncode})"
