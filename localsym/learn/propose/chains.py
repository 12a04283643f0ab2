"""Glue chains induced from data: the chains worth trying on a tool's argument (cuts at a
prefix, suffix or delimiter every value shares, the numbers or words of a text, one cut after
another) and from a tool's results to an output (a trim, a case, a parse, a re-join, a small
table). Each list is bounded, distinct on the values given, and ordered simplest first
(``complexity``). Used by ``learn/propose/glue.py``; no model, no tool call."""

from __future__ import annotations

import os
import re
from typing import Any

from localsym.agent import glue
from localsym.agent.chain import run as run_chain
from localsym.agent.glue import (After, Before, Case, Chars, GlueError, Item, Join, Map,
                                 Numbers, Regex, Round, Split, StripPrefix, StripSuffix, ToFloat,
                                 Trim, Words)

MAX_DELIMITERS = 16


def arg_chains(values: list[Any], annotation: Any = str) -> list[tuple]:
    """Chains worth trying on a tool argument read from these values (one per distinct result
    on them, the simplest first): whole, one cut, a cut then a second cut or an extraction,
    each perhaps trimmed; those whose results the argument's type cannot take are left out."""
    if not values or not all(isinstance(v, str) for v in values):
        return [()]
    first = _cuts(values)
    chains: list[tuple] = [()] + [(c,) for c in first] + _extractors(values)
    for cut in first:
        after = _run_all((cut,), values)
        if after is not None:
            chains += [(cut, c) for c in _cuts(after)] + [(cut,) + e for e in _extractors(after)]
    chains += [ch + (Trim(),) for ch in chains if not ch or not isinstance(ch[-1], Trim)]
    return _distinct(chains, values, annotation)


def output_chains(results: list[str], wants: list[Any], type_: str) -> list[tuple]:
    """Chains worth trying from a tool's results to an output of ``type_``, the simplest first:
    as it is, trimmed, a case, a number read from it (and rounded), a cut, a list re-joined, a
    small table from result to answer."""
    chains: list[tuple] = [(), (Trim(),)]
    if type_ == "str":
        chains += [(Case(to=t),) for t in ("lower", "upper", "title")]
    chains += [(Numbers(), Item(index=0)), (Numbers(), Item(index=-1))]
    if type_ in ("int", "float"):
        chains += [(ToFloat(), Round(digits=d)) for d in range(4)]
    if results:
        chains += [(c,) for c in _cuts(results)]
        splitters = [Chars(), Words()] + [Split(separator=s) for s in (",", ", ", ";", "\n")
                                          if all(s in r for r in results)]
        chains += [(s, Join(separator=j)) for s in splitters for j in (" ", ", ", ",", "")]
        table = _table(results, wants)
        if table:
            chains.append((Map(table=table),))
    return chains


def _table(results: list[str], wants: list[Any]) -> dict[str, str] | None:
    """A result -> answer table where the results take a few values, each seen at least twice,
    always with the same answer (a tool that says True/False for an answer yes/no)."""
    pairs: dict[str, set[str]] = {}
    for r, w in zip(results, wants):
        pairs.setdefault(r, set()).add(str(w))
    if not 2 <= len(pairs) <= min(12, len(results) // 2) or \
            any(len(v) != 1 or results.count(k) < 2 for k, v in pairs.items()):
        return None
    table = {k: next(iter(v)) for k, v in pairs.items()}
    ok = all(len(k) <= glue.MAX_PARAM and len(v) <= glue.MAX_PARAM for k, v in table.items())
    return table if ok and any(k != v for k, v in table.items()) else None


def _cuts(values: list[str]) -> list[glue.Op]:
    """Single cuts every value allows: strip the shared prefix or suffix (at a word boundary),
    the text after or before a delimiter every value holds, a quoted part."""
    out: list[glue.Op] = []
    prefix = _boundary(os.path.commonprefix(values), from_end=False)
    suffix = _boundary(os.path.commonprefix([v[::-1] for v in values])[::-1], from_end=True)
    if prefix and len(prefix) <= glue.MAX_PARAM and prefix not in values:
        out.append(StripPrefix(prefix=prefix))
    if suffix and len(suffix) <= glue.MAX_PARAM and suffix not in values:
        out.append(StripSuffix(suffix=suffix))
    for d in _delimiters(values):
        for occurrence in ("first", "last"):
            out += [After(delimiter=d, occurrence=occurrence),
                    Before(delimiter=d, occurrence=occurrence)]
    for q in ('"', "'"):
        if all(v.count(q) >= 2 for v in values):
            out.append(Regex(pattern=f"{q}([^{q}]*){q}", group=1))
    return out


def _boundary(text: str, from_end: bool) -> str:
    """A shared prefix (or suffix) cut back to whitespace, so it never ends inside a word."""
    if not text:
        return ""
    if from_end:
        at = next((i for i, c in enumerate(text) if c.isspace()), None)
        return text if text[0].isspace() or not text[0].isalnum() else \
            ("" if at is None else text[at:])
    at = next((i for i in range(len(text) - 1, -1, -1) if text[i].isspace()), None)
    return text if text[-1].isspace() or not text[-1].isalnum() else \
        ("" if at is None else text[:at + 1])


def _delimiters(values: list[str]) -> list[str]:
    """Delimiters every value holds, in order of their first appearance in the first value:
    runs of punctuation and space, single marks, and a word ending in a mark (``List:``)."""
    first = values[0]
    found = re.findall(r"[^\w]+", first) + [c for c in first if not c.isalnum() and c != " "] + \
        re.findall(r"\w+[^\w\s]+", first)
    found = sorted(set(found), key=first.index)
    return [d for d in found if len(d) <= 40 and all(d in v for v in values)][:MAX_DELIMITERS]


def _extractors(values: list[str]) -> list[tuple]:
    """The k-th or last number or word of a text, where every value has one."""
    out = []
    for kind in (Numbers(), Words()):
        counts = [len(kind(v)) for v in values]
        if min(counts) > 0:
            out += [(kind, Item(index=k)) for k in range(min(min(counts), 4))]
            out.append((kind, Item(index=-1)))
    return out


def _run_all(chain: tuple, values: list[Any]) -> list[Any] | None:
    try:
        out = [run_chain(chain, v) for v in values]
    except GlueError:
        return None
    return out if all(isinstance(o, str) and o.strip() for o in out) else None


def _distinct(chains: list[tuple], values: list[str], annotation: Any) -> list[tuple]:
    """One chain per distinct list of results (the simplest), the results all non-empty texts
    the argument's type takes."""
    seen, out = set(), []
    for chain in sorted(chains, key=complexity):
        results = _run_all(chain, values)
        if results is None or (annotation in (int, float) and not _parse_all(results, annotation)):
            continue
        key = tuple(results)
        if key not in seen:
            seen.add(key)
            out.append(chain)
    return out


def _parse_all(results: list[str], annotation: Any) -> bool:
    try:
        for r in results:
            glue.whole_number(r) if annotation is int else float(r)
    except (GlueError, ValueError):
        return False
    return True


def complexity(chain: tuple) -> int:
    """How much a chain assumes: its steps, then the length of its parameters."""
    return 1000 * len(chain) + sum(len(str(v)) for op in chain
                                   for v in op.model_dump(exclude_defaults=True).values())
