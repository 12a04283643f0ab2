"""Conditionals by divide and conquer (EUSolver's way): where no one value answers every row,
the rows are split by a truth value the bank holds (``contains(s, '.')``, ``len(x) < 5``), each
part answered by the smallest value (or concatenation) that answers all of its rows, and the
parts put together under ``then if cond else other``; the smallest such tree first, up to
``branches`` branches. And where only some rows have a program, a guard: a truth value that
holds on those rows only, under which the program answers and the model answers elsewhere."""

from __future__ import annotations

from typing import Callable

from localsym.learn.synth.values import Value, cond_result

PREDICATES = 300  # the smallest distinct splits tried
JOINS = 96  # parts of the rows an answer is sought for as a join (each a shortest-path search)


class Conditionals:
    """The conditional answers of one output (``terms``: the smallest value answering each mask
    of rows; ``predicates``: truth values by the rows they hold on; ``joined``: a
    concatenation answering the rows of a mask, or None)."""

    def __init__(self, terms: dict[int, Value], predicates: dict[int, Value], n: int,
                 joined: Callable[[int], Value | None], branches: int):
        self.terms, self.n, self.joined, self.branches = terms, n, joined, branches
        self.all = (1 << n) - 1
        self.preds = sorted(predicates.items(), key=lambda mv: (mv[1].level, mv[1].cost))
        self.preds = self.preds[:PREDICATES]
        self._term: dict[int, Value | None] = {}
        self.joins = JOINS
        self._solved: dict[tuple[int, int], Value | None] = {}

    def term(self, rows: int) -> Value | None:
        """The smallest value that answers every row of ``rows``."""
        if rows not in self._term:
            best = None
            for mask, v in self.terms.items():
                if mask & rows == rows and (best is None or (v.level, v.cost) <
                                            (best.level, best.cost)):
                    best = v
            if self.joins > 0 and bin(rows).count("1") >= 2:  # a join for one row is a copy
                self.joins -= 1
                joined = self.joined(rows)
                if joined is not None and (best is None or joined.level < best.level):
                    best = joined
            self._term[rows] = best
        return self._term[rows]

    def solve(self, rows: int | None = None, depth: int = 1) -> Value | None:
        """The smallest tree that answers every row of ``rows`` (all: a conditional, or
        None)."""
        rows = self.all if rows is None else rows
        key = (rows, depth)
        if key in self._solved:
            return self._solved[key]
        best = self.term(rows) if rows != self.all else None
        if depth < self.branches:
            for mask, p in self.preds:
                if best is not None and p.level + 3 >= best.level:
                    break  # the predicates are in order of size: none below is smaller
                then_rows, other_rows = rows & mask, rows & ~mask
                if not then_rows or not other_rows:
                    continue
                then = self.term(then_rows)
                if then is None or (best is not None and
                                    1 + p.level + then.level + 1 >= best.level):
                    continue
                other = self.solve(other_rows, depth + 1)
                if other is None:
                    continue
                level = 1 + p.level + then.level + other.level
                if best is None or level < best.level:
                    best = cond_result(p, then, other, _choose(p, then, other))
        self._solved[key] = best
        return best

    def guarded(self, least: int) -> tuple[Value, Value] | None:
        """A value that answers some rows and a predicate true on those rows only (at least
        ``least`` of them), the most rows first: (predicate, value), or None."""
        best: tuple[int, int, Value, Value] | None = None
        for mask, v in sorted(self.terms.items(), key=lambda mv: (-bin(mv[0]).count("1"),
                                                                  mv[1].level))[:50]:
            for pmask, p in self.preds:
                covered = bin(pmask).count("1")
                if pmask & mask == pmask and covered >= least and (
                        best is None or (covered, -p.level - v.level) > best[:2]):
                    best = (covered, -p.level - v.level, p, v)
        return (best[2], best[3]) if best is not None else None


def _choose(p: Value, then: Value, other: Value) -> tuple:
    return tuple(None if c is None else (t if c else o)
                 for c, t, o in zip(p.vec, then.vec, other.vec))
