"""Outputs matched against values: each wanted output of a node against every value the search
keeps, as it is, through a table (a tool's ``true``/``false`` to the labels the answer uses) or
through a template (the parts of a result in another order, ``{1}/{2}/{0}``), scored per
example with the run's metric. A value that answers the same on every example is not a program
the data supports (it is the majority label), and is never a match."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from localsym.agent import glue
from localsym.agent.glue import Format, Map
from localsym.agent.program import coerce, fits
from localsym.agent.weights import FieldSpec
from localsym.data import Example
from localsym.learn.synth.values import Value, apply_op
from localsym.metrics import Metric, score

TOP = 12  # values kept per output
PROBE = 4  # examples a value is tried on before all of them


@dataclass(frozen=True, eq=False)
class Match:
    """A node's outputs as values, their mean score on each example, their cost, what they
    answer (two matches that answer alike are one)."""

    outputs: dict[str, Value]
    scores: tuple[float, ...]
    cost: int
    answers: tuple

    @property
    def score(self) -> float:
        return sum(self.scores) / len(self.scores) if self.scores else 0.0


def _as_field(value: Any, f: FieldSpec) -> Any:
    try:
        return coerce(value, f.type)
    except (glue.GlueError, TypeError, ValueError, OverflowError):
        return value


class Matcher:
    """The best values for each wanted output, as values are added."""

    def __init__(self, metric: Metric, wanted: list[FieldSpec], rows: list[Example]):
        self.metric, self.wanted, self.rows = metric, wanted, rows
        self.targets = {f.name: [ex.expected[f.name] for ex in rows] for f in wanted}  # type: ignore[index]
        self.top: dict[str, list] = {f.name: [] for f in wanted}
        self.order = itertools.count()
        self.tried: set[int] = set()

    def add(self, values: list[Value]) -> None:
        for v in values:
            if id(v) in self.tried:
                continue
            self.tried.add(id(v))
            for f in self.wanted:
                for candidate in [v] + self._reshaped(v, f):
                    self._try(candidate, f)

    def best(self) -> float:
        """The lowest, over the wanted outputs, of the best score found for it."""
        return min((max((-round(t[0], 4) for t in top), default=0.0)
                    for top in self.top.values()), default=0.0)

    def matches(self) -> list[Match]:
        """Every kept value of the first output with the best of each other, best first."""
        if not self.wanted:
            return []
        ranked = {k: sorted(top, key=lambda t: t[:3])[:TOP] for k, top in self.top.items()}
        first, others = self.wanted[0].name, [f.name for f in self.wanted[1:]]
        out, seen = [], set()
        for _, cost, _, scores, answers, v in ranked[first]:
            outputs = {first: v}
            total, total_cost, all_answers = list(scores), cost, [answers]
            for name in others:
                if ranked[name]:
                    _, c, _, s, a, w = ranked[name][0]
                    outputs[name] = w
                    total = [x + y for x, y in zip(total, s)]
                    total_cost += c
                    all_answers.append(a)
            key = tuple(all_answers)
            if key in seen:
                continue  # answers as a simpler one does: one of them is enough
            seen.add(key)
            out.append(Match(outputs, tuple(x / len(self.wanted) for x in total), total_cost,
                             key))
        out.sort(key=lambda m: (-m.score, m.cost))
        return out

    def score_of(self, v: Value, name: str) -> float:
        """``v``'s mean score as output ``name`` (a constant answer scores 0)."""
        f = next(x for x in self.wanted if x.name == name)
        scored = [self._one(e, t, f) if e is not None else (0.0, None)
                  for e, t in zip(v.vec, self.targets[name])]
        if len({a for _, a in scored if a is not None}) <= 1 and len(self.rows) >= 4:
            return 0.0
        return sum(s for s, _ in scored) / len(scored)

    def _try(self, v: Value, f: FieldSpec) -> None:
        target = self.targets[f.name]
        defined = [i for i, e in enumerate(v.vec) if e is not None]
        if not defined or not any(self._one(v.vec[i], target[i], f)[0] for i in defined[:PROBE]):
            return
        scored = [self._one(e, t, f) if e is not None else (0.0, None)
                  for e, t in zip(v.vec, target)]
        answers = tuple(a for _, a in scored)
        if len({a for a in answers if a is not None}) <= 1 and len(self.rows) >= 4:
            return  # the same answer everywhere: a constant, not a program
        scores = tuple(s for s, _ in scored)
        mean = sum(scores) / len(scores)
        # among equal scores, the answers written exactly as the data writes them first
        exact = sum(a is not None and a == repr(_as_field(t, f)) for a, t in zip(answers, target))
        top = self.top[f.name]
        top.append((-mean - exact * 1e-6, v.cost, next(self.order), scores, answers, v))
        if len(top) > 4 * TOP:
            top.sort(key=lambda t: t[:3])
            del top[TOP:]

    def _one(self, entry: Any, want: Any, f: FieldSpec) -> tuple[float, Any]:
        """One example's score of ``entry`` as output ``f`` (0 where it is not one), and the
        answer it gives."""
        try:
            value = coerce(list(entry) if isinstance(entry, tuple) else entry, f.type)
        except (glue.GlueError, TypeError, ValueError, OverflowError):
            return 0.0, None
        if not fits(value, f):
            return 0.0, None
        return score(self.metric, {f.name: value}, {f.name: want}).score, repr(value)

    def _reshaped(self, v: Value, f: FieldSpec) -> list[Value]:
        """The value through a table to the output's answers, or through a template."""
        out = []
        op = table(v.vec, self.targets[f.name])
        if op is not None:
            out.append(v.then(op, apply_op(op, v.vec)))
        if f.type == "str":
            fmt = template(v.vec, self.targets[f.name])
            if fmt is not None:
                out.append(v.then(fmt, apply_op(fmt, v.vec)))
        return out


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
