"""A tool's result reshaped to the answers: through a table (a tool's ``true``/``false`` to the
labels the answer uses) or a template (the parts of a result in another order, ``{1}/{2}/{0}``),
each induced from the training rows and kept only where the rows support it."""

from __future__ import annotations

import re
from typing import Any

from localsym.agent import glue
from localsym.agent.glue import Format, Map


def table(vec: tuple, targets: list[Any]) -> Map | None:
    """A result -> answer table where the entries take a few values, each seen at least twice
    (or, with two values, once), nearly always with the same answer: a tool that says
    true/false for an answer Valid/Invalid. None where the data supports none."""
    pairs: dict[str, dict[str, int]] = {}
    for e, t in zip(vec, targets):
        if e is not None and not isinstance(e, tuple):
            pairs.setdefault(glue.number_text(e) if isinstance(e, (int, float)) else str(e),
                             {}).setdefault(str(t), 0)
            pairs[glue.number_text(e) if isinstance(e, (int, float)) else str(e)][str(t)] += 1
    n = sum(sum(c.values()) for c in pairs.values())
    if not 2 <= len(pairs) <= min(12, max(2, n // 4)) or \
            any(sum(c.values()) < 2 for c in pairs.values()):
        return None  # a table over many values, or one seen once, memorizes
    mapping = {k: max(c, key=c.get) for k, c in pairs.items()}  # type: ignore[arg-type]
    agree = sum(c[mapping[k]] for k, c in pairs.items())
    if agree < 0.8 * n or len(set(mapping.values())) < 2 or \
            all(k == v for k, v in mapping.items()):
        return None
    if any(len(k) > glue.MAX_PARAM or len(v) > glue.MAX_PARAM for k, v in mapping.items()):
        return None
    return Map(table=mapping)


_FIELD = re.compile(r"\{\d+\}")


def template(vec: tuple, targets: list[Any]) -> Format | None:
    """A template that writes each entry's items into the answer (``{1}/{2}/{0}``), induced
    from one example and kept only if it gives the answer on most of them."""
    lists = [(e, str(t)) for e, t in zip(vec, targets) if isinstance(e, tuple) and e]
    for items, want in lists[:3]:
        fmt = _induce(list(items), want)
        if fmt is None:
            continue
        try:
            op = Format(template=fmt)
        except ValueError:
            continue
        hits = sum(1 for e, t in lists if _safe(op, list(e)) == t)
        if hits * 4 >= len(lists) * 3:
            return op
    return None


def _induce(items: list[str], want: str) -> str | None:
    """The template that writes ``want`` from ``items``: at each place the longest item that
    appears there, else the character as it is."""
    out, i, used = [], 0, 0
    order = sorted(range(len(items)), key=lambda k: -len(items[k]))
    while i < len(want):
        k = next((k for k in order if items[k] and want.startswith(items[k], i)), None)
        if k is None:
            out.append(want[i].replace("{", "(").replace("}", ")"))
            i += 1
        else:
            out.append("{%d}" % k)
            i += len(items[k])
            used += 1
    text = "".join(out)
    return text if used and len(text) <= glue.MAX_PARAM and _FIELD.search(text) else None


def _safe(op: Format, items: list[str]) -> str | None:
    try:
        return op(items)
    except glue.GlueError:
        return None
