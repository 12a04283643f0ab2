"""This task's own tool (a user's code): run a function's docstring examples in the sandbox."""

import re

from localsym.sandbox import run_python


def examples_of(prompt: str) -> list[tuple[str, str]]:
    """The ``>>> call`` lines of a docstring and the output written under each."""
    lines = prompt.splitlines()
    out = []
    for i, line in enumerate(lines):
        m = re.match(r"\s*>>> (.+)", line)
        if m and i + 1 < len(lines) and lines[i + 1].strip() and \
                not lines[i + 1].strip().startswith(">>>"):
            out.append((m.group(1).strip(), lines[i + 1].strip()))
    return out


def run_examples(code: str, prompt: str) -> str:
    """Run the docstring's examples against the code; 'pass', or what failed."""
    cases = examples_of(prompt)
    if not cases:
        return "pass"
    checks = "\n".join(
        f"try:\n    _got = repr({call})\nexcept Exception as _e:\n    _got = 'raised ' + repr(_e)\n"
        f"if _got != {want!r} and _got != repr({want}):\n"
        f"    _fails.append({call!r} + ' gave ' + _got + ', expected ' + {want!r})"
        for call, want in cases)
    program = f"{code}\n\n_fails = []\n{checks}\nprint('FAILS:' + ' | '.join(_fails))\n"
    result = run_python(program, timeout=10)
    if result.timed_out:
        return "the code did not finish within 10 s"
    line = next((l for l in result.output.splitlines() if l.startswith("FAILS:")), None)
    if line is None:
        return "the code does not run: " + (result.output.strip().splitlines() or ["?"])[-1][:300]
    return "pass" if line == "FAILS:" else line[len("FAILS:"):][:500]
