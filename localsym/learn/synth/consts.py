"""Constants a program may need that the inputs do not show: the literal text the answers share
(a prefix, a suffix, a separator, a phrase around a value), the parts of an answer no input
holds, a few small numbers and the width every answer has, the words every input shares (a
unit, a time zone), and the values
a tool says it takes (its annotation's choices, its defaults, the quoted words and numbers of
its description). Each comes with its size: a separator 1, a phrase 2."""

from __future__ import annotations

import inspect
import re
import typing
from typing import Any

from localsym.data import Example

MAX_TEXTS = 12  # text constants from the answers
MAX_LEN = 40  # characters of one
NUMBERS = ((0, 1), (1, 1), (2, 1), (3, 1), (-1, 2))
TOOL_NUMBERS = (0, 1, 2, 3) + tuple(range(4, 11)) + (12, 24, 60, 100, 1000)


def from_data(rows: list[Example], inputs: list[str], outputs: list[str]
              ) -> list[tuple[Any, int]]:
    """(constant, size) the rows suggest, in a fixed order."""
    out: list[tuple[Any, int]] = list(NUMBERS)
    texts: list[str] = []
    for name in outputs:
        answers = [str(ex.expected[name]) for ex in rows if ex.expected and name in ex.expected]
        sizes = {len(a) for a in answers}
        if len(answers) >= 2 and len(sizes) == 1 and sizes.pop() > 3:  # a fixed width (padding)
            out.append((len(answers[0]), 2))
        sources = [" ".join(str(ex.inputs.get(i, "")) for i in inputs) for ex in rows]
        texts += shared(answers) + gaps(answers, sources)
    texts += [c for name in outputs for ex in rows
              for c in str((ex.expected or {}).get(name, "")) if not c.isalnum()]
    texts += [c for ex in rows for i in inputs for c in str(ex.inputs.get(i, ""))
              if not c.isalnum() and not c.isspace()]  # what tells rows apart: a mark some hold
    seen: set[str] = set()
    for t in texts:
        if t and t not in seen and len(t) <= MAX_LEN and len(seen) < MAX_TEXTS + 8:
            seen.add(t)
            out.append((t, 1 if len(t) == 1 and not t.isalnum() else 2))
    out += [(w, 2) for w in common_words(rows, inputs)]
    if any(str((ex.expected or {}).get(n, "x")) == "" for ex in rows for n in outputs):
        out.append(("", 1))  # an answer that is empty on some rows
    return out


def shared(answers: list[str]) -> list[str]:
    """The longest texts every answer holds (two answers or more): maximal common substrings,
    a single character only where it is not a letter or a digit."""
    if len(answers) < 2:
        return []
    base = min(answers, key=len)
    found: list[str] = []
    for size in range(min(len(base), MAX_LEN), 0, -1):
        for i in range(len(base) - size + 1):
            part = base[i:i + size]
            if part in found or any(part in f for f in found):
                continue
            if (size > 1 or not part.isalnum()) and all(part in a for a in answers):
                found.append(part)
        if len(found) >= MAX_TEXTS:
            break
    return found


def gaps(answers: list[str], sources: list[str]) -> list[str]:
    """The parts of the answers no input holds (what is left once every run of two or more
    characters found in the row's inputs is taken out), kept where two rows show them (the
    only row, with one), the most shown first."""
    counts: dict[str, int] = {}
    for answer, src in zip(answers, sources):
        found = _uncovered(answer, src)
        # a run of one character (000 before 42) is that character repeated: padding
        found += [g[0] for g in found if len(g) > 1 and len(set(g)) == 1]
        for gap in dict.fromkeys(found):
            counts[gap] = counts.get(gap, 0) + 1
    need = 1 if len(answers) == 1 else 2
    return sorted((g for g, c in counts.items() if c >= need), key=lambda g: -counts[g])


def _uncovered(answer: str, src: str) -> list[str]:
    covered = [False] * len(answer)
    words = set(src.split())  # an input of one character is a part too
    initials = {w[0] for w in words if w[:1].isalnum()}  # a letter cut from a word's start
    i = 0
    while i < len(answer):
        size = 0
        for j in range(len(answer), i, -1):
            part = answer[i:j]
            if (j - i >= 2 and part in src) or part in words or part in initials:
                size = j - i  # an initial is cut from its word, not written (L. Kirkland)
                break
        if size:
            covered[i:i + size] = [True] * size
            i += size
        else:
            i += 1
    out, run = [], ""
    for c, cov in zip(answer, covered):
        if cov:
            if run:
                out.append(run)
            run = ""
        else:
            run += c
    return out + ([run] if run else [])


def common_words(rows: list[Example], inputs: list[str]) -> list[str]:
    """A word or a number every example's inputs hold (a unit, a time zone, a delimiter), at
    most eight; none from one example (every word of it would be "shared")."""
    if len(rows) < 2:
        return []
    common: set[str] | None = None
    for ex in rows:
        text = " ".join(str(ex.inputs.get(i, "")) for i in inputs)
        words = set(re.findall(r"[A-Za-z]{2,}|\d+", text))
        common = words if common is None else common & words
    return sorted(common or [], key=lambda w: (len(w), w))[:8]


def of_tool(fn: Any, annotation: Any = None) -> list[Any]:
    """Values a tool says it takes: its arguments' choices (``Literal``) and defaults, and the
    quoted words and the numbers of its description."""
    out: list[Any] = []
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        sig = None
    for p in (sig.parameters.values() if sig else ()):
        if typing.get_origin(p.annotation) is typing.Literal:
            out += list(typing.get_args(p.annotation))
        if p.default is not inspect.Parameter.empty and isinstance(p.default, (str, int, float)):
            out.append(p.default)
    doc = inspect.getdoc(fn) or ""
    out += re.findall(r"['\"`]([^'\"`\s]{1,30})['\"`]", doc)
    out += [int(n) for n in re.findall(r"(?<![\w.])(-?\d{1,6})(?![\w.])", doc)]
    if sig and any(p.annotation in (int, float) for p in sig.parameters.values()):
        out += list(TOOL_NUMBERS)  # numbers a count, a rate or a period plausibly is
    return list(dict.fromkeys(x for x in out if not isinstance(x, bool)))
