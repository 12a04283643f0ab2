"""HumanEval's metric: the generated code run against the problem's tests, in the sandbox."""

from __future__ import annotations

from localsym.sandbox import run_tests


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
