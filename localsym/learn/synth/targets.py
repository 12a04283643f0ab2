"""What each wanted output is on each training row, and what the values found so far give of it.

Every value the bank keeps is observed once: the rows it answers exactly (a bit mask), the
smallest value for each mask (the terms a conditional is made of), the values whose entries sit
inside the answer on some rows (the parts a concatenation is made of), the truth values by the
rows they hold on (the predicates a conditional chooses by), and the values that answer every
row (the solutions). The answer is compared as the output's type reads it: ``'5'`` and ``5``
are one answer for an int output, a number is its text for a str one."""

from __future__ import annotations

from typing import Any

from localsym.agent.glue import GlueError, number_text, whole_number
from localsym.agent.weights import FieldSpec
from localsym.data import Example
from localsym.learn.synth.bank import pool_of
from localsym.learn.synth.values import Value

_NONE = object()  # a row with no answer of this pool: equal to nothing
SOLUTIONS = 32  # solutions kept per output
PIECES = 60_000  # parts kept per output for concatenation
PIECE_LEVEL = 7  # the largest part
PARTIAL = 12  # partial values with tool calls kept for local search


def _as(pool: str, want: Any, type_: str) -> Any:
    """The expected answer as an entry of ``pool`` would be written (``_NONE``: none)."""
    try:
        if type_ == "list[str]":
            return tuple(str(x) for x in want) if pool == "list" and \
                isinstance(want, list) else _NONE
        if pool == "text":
            if type_ == "bool":
                return str(want).strip().lower()
            return number_text(want) if isinstance(want, (int, float)) and \
                not isinstance(want, bool) else str(want)
        if pool in ("int", "num"):
            number = whole_number(str(want)) if pool == "int" else float(str(want))
            if type_ == "str" and number_text(number) != str(want):
                return _NONE  # a str answer written otherwise ('12.0') is not this number
            return number
        if pool == "bool":
            text = str(want).strip().lower()
            return text == "true" if text in ("true", "false") else _NONE
    except (GlueError, ValueError, OverflowError):
        return _NONE
    return _NONE


class Targets:
    """The wanted outputs on the training rows (the first ``n`` entries of every vector), and
    what the values observed give of them."""

    def __init__(self, wanted: list[FieldSpec], rows: list[Example]):
        self.names = [f.name for f in wanted]
        self.n = len(rows)
        self.all = (1 << self.n) - 1
        self.want = {f.name: {p: tuple(_as(p, ex.expected[f.name], f.type)  # type: ignore[index]
                                       for ex in rows)
                              for p in ("text", "int", "num", "bool", "list")} for f in wanted}
        self.texts = {f.name: tuple(str(ex.expected[f.name]) for ex in rows)  # type: ignore[index]
                      for f in wanted if f.type == "str"}
        self.solutions: dict[str, list[Value]] = {k: [] for k in self.names}
        self.by_mask: dict[str, dict[int, Value]] = {k: {} for k in self.names}
        self.pieces: dict[str, list[tuple[Value, int]]] = {k: [] for k in self.texts}
        self.predicates: dict[int, Value] = {}
        self.partial: dict[str, list[tuple[int, Value]]] = {k: [] for k in self.names}

    def observe(self, v: Value) -> None:
        pool = pool_of(v)
        if pool == "bool":
            self._predicate(v)
        for name in self.names:
            want = self.want[name][pool]
            mask = 0
            for i, (e, t) in enumerate(zip(v.vec, want)):
                if e == t and e is not None:
                    mask |= 1 << i
            if mask:
                self._answer(name, v, mask)
            if pool == "text" and name in self.texts and v.level <= PIECE_LEVEL:
                self._piece(name, v)

    def _answer(self, name: str, v: Value, mask: int) -> None:
        if mask == self.all and len(self.solutions[name]) < SOLUTIONS:
            self.solutions[name].append(v)
        old = self.by_mask[name].get(mask)
        if old is None or (v.level, v.cost) < (old.level, old.cost):
            self.by_mask[name][mask] = v
        if v.call is not None or any(p.call is not None for p in v.parts()):
            part = self.partial[name]
            part.append((bin(mask).count("1"), v))
            part.sort(key=lambda c: (-c[0], c[1].level, c[1].cost))
            del part[PARTIAL:]

    def _piece(self, name: str, v: Value) -> None:
        if len(self.pieces[name]) >= PIECES:
            return
        mask, some = 0, False
        for i, (e, t) in enumerate(zip(v.vec, self.texts[name])):
            if isinstance(e, str) and e in t:
                mask |= 1 << i
                some = some or bool(e)
        if mask and some:
            self.pieces[name].append((v, mask))

    def _predicate(self, v: Value) -> None:
        if any(e is None for e in v.vec[:self.n]):
            return
        mask = sum(1 << i for i, e in enumerate(v.vec[:self.n]) if e)
        if 0 < mask < self.all and mask not in self.predicates:
            self.predicates[mask] = v

    def solved(self) -> bool:
        return all(self.solutions[k] for k in self.names)

    def rate(self, name: str, v: Value) -> float:
        """The share of the rows ``v`` answers as output ``name``."""
        want = self.want[name][pool_of(v)]
        return sum(1 for e, t in zip(v.vec, want) if e == t and e is not None) / max(1, self.n)
