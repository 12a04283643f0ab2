"""HumanEval's metric: the generated code run against the problem's tests, in the sandbox."""

from __future__ import annotations

import secrets

from localsym.sandbox import run_python


def _program(outputs: dict, expected: dict, nonce: str) -> str:
    code = str(outputs.get("code", ""))
    entry = expected["entry_point"]
    if f"def {entry}" not in code and "prompt" in expected:  # a body only: put it under its header
        code = expected["prompt"] + code
    # the tests passed only if the program returns normally, which the sandbox's guard attests
    # with a secret the code never sees (``RunResult.completed``): an early exit(0), a printed
    # marker or an excepthook cannot pass; and the tests see the solution's results only as
    # plain values (an object whose __eq__ says yes to anything fails)
    guard = _GUARD.replace("NONCE", nonce.replace("-", "_"))
    return f"{code}\n\n{expected['test']}\n\n{guard}\n" \
        f"check(_plain_{nonce.replace('-', '_')}({entry}))\n"


# Defined after the model's code and the tests, from literals only (a solution may rebind
# builtins such as type or all, never the types of literals): the results a test compares must
# be made of the built-in value types, exactly.
_GUARD = """
def _plain_NONCE(fn, _type=(0).__class__.__class__, _values=((0).__class__, (0.0).__class__,
        ''.__class__, (True).__class__, (None).__class__, (0j).__class__, b''.__class__),
        _seqs=([].__class__, ().__class__, set().__class__, frozenset().__class__),
        _map={}.__class__):
    def plain(v, depth):
        t = _type(v)
        if t in _values:
            return True
        if depth > 20:
            return False
        if t in _seqs:
            for x in v:
                if not plain(x, depth + 1):
                    return False
            return True
        if t is _map:
            for k in v:
                if not plain(k, depth + 1) or not plain(v[k], depth + 1):
                    return False
            return True
        return False

    def guarded(*args, **kwargs):
        result = fn(*args, **kwargs)
        if not plain(result, 0):
            raise TypeError("the solution returned a " + _type(result).__name__ +
                            ", not a plain value")
        return result
    return guarded
"""


def _run_tests(outputs: dict, expected: dict):
    nonce = f"localsym_{secrets.token_hex(8)}"
    result = run_python(_program(outputs, expected, nonce), timeout=10)
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
