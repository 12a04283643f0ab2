"""Enumeration by size, every value at once (bottom-up with observational equivalence, as in
BUSTLE and Probe).

The bank holds the values found so far by size (``level``) and pool (``text``, ``int``,
``num``, ``list``, ``bool``), one per distinct vector: the first found, so the smallest. Level
``L`` is made from the levels below it: every glue operation the data suggests on a value
(``menu``), and every operation of several values (``agent/functions.py``) on values whose sizes
add up to ``L - 1``. New sources (a round of tool results) open an *epoch*: the levels are made
again, from combinations that hold at least one value of the new epoch, so nothing is computed
twice. Each value kept is handed to ``observe`` (the targets). The order is a function of the
rows and the sources only, and every bound is a count (``SynthLimits``); seconds are a safety
cap that says when it fired."""

from __future__ import annotations

import time
from itertools import product
from typing import Any, Callable

from localsym.agent.functions import FUNCTIONS
from localsym.agent.glue import Op
from localsym.learn.synth.limits import SynthLimits
from localsym.learn.synth.menu import menu, op_level
from localsym.learn.synth.values import FAILS, Fn, Value, apply_op, fn_result

POOLS = ("text", "int", "num", "list", "bool")
ARG_POOL = {"text": "text", "number": "int", "bool": "bool", "list": "list"}
# operations of several values, in the order each level tries them, and what they must not
# be given (a combination another order or a constant already covers)
ORDER = ("concat", "left", "right", "substr", "at", "len", "find", "find_from", "replace",
         "replace_all", "to_text", "add", "sub", "contains", "startswith", "endswith", "equals",
         "less", "at_most", "not", "and", "or", "occurrences", "rept", "pick")
SLICE = 256  # combinations an operation makes before the next one takes its turn
COMMUTATIVE = {"add", "equals", "and", "or"}
SUBJECT = {"left", "right", "substr", "at", "len", "find", "find_from", "replace",
           "replace_all", "contains", "startswith", "endswith", "occurrences", "to_text", "pick"}

def pool_of(v: Value) -> str:
    return pool_for(v.kind, v.vec)


def pool_for(kind: str, vec: tuple) -> str:
    """The pool of a value of ``kind`` with entries ``vec`` (whole numbers apart from others;
    values of two pools are never one, though ``(1, 0) == (True, False)``)."""
    if kind == "number":
        return "int" if all(type(e) is int for e in vec if e is not None) else "num"
    return kind if kind in POOLS else "text"


ENTRY = 56  # bytes an entry of a vector takes besides its characters (a str, a reference)


def footprint(vec: tuple) -> int:
    """The bytes a vector takes, estimated from its first defined entry (a text's characters,
    a list's items) times its length: cheap enough to count every value kept."""
    first = next((e for e in vec if e is not None), None)
    if isinstance(first, tuple):
        each = sum(len(x) if isinstance(x, str) else 8 for x in first) + ENTRY * (len(first) + 1)
    else:
        each = (len(first) if isinstance(first, str) else 8) + ENTRY
    return each * len(vec)


def apply_fn(fast: Callable, vecs: list[tuple]) -> tuple:
    out: list[Any] = []
    for args in zip(*vecs):
        if None in args:
            out.append(None)
            continue
        try:
            out.append(fast(*args))
        except FAILS:
            out.append(None)
    return tuple(out)


class Bank:
    """The values found so far, by level and pool (see the module doc)."""

    def __init__(self, limits: SynthLimits, rows: int, observe: Callable[[Value], None],
                 deadline: float):
        self.limits, self.observe, self.deadline = limits, observe, deadline
        self.capacity = min(limits.values, max(1000, limits.cells // max(1, rows)))
        self.seen: dict[tuple, Value] = {}
        self.bytes = 0  # what the kept values take, estimated (``footprint``)
        self.serial: dict[int, int] = {}  # a kept value (by id: every one is held) -> how many
        # were kept before it (its index in the enumeration, what names it)
        self.at: dict[int, dict[str, list[Value]]] = {}
        self.mark: dict[tuple[int, str], int] = {}  # where this epoch's values start
        self.deferred: dict[int, list[tuple[Value, Op]]] = {}
        self.tried = 0
        self.epoch = 0
        self.full = 0  # the sizes made whole before this epoch (an epoch remakes those only)
        self.share: tuple[int, int] | None = None  # (values, computed): this phase's share
        self.stopped_by = ""
        self.done = False  # set by the caller when what it looks for is found

    # -- keeping -----------------------------------------------------------------------------
    def add(self, v: Value, observe: bool = True) -> bool:
        """Keep ``v`` unless a value with its vector is kept already (of its size: unless that
        one assumes more, which ``v`` then replaces), or it is nowhere defined."""
        pool = pool_of(v)
        old = self.seen.get((pool, v.vec))
        if old is not None:
            if old.level != v.level or old.cost <= v.cost:
                return False
            same = self.at[v.level][pool]
            same[same.index(old)] = v
            self.serial[id(v)] = self.serial.pop(id(old))
        elif all(e is None for e in v.vec):
            return False
        else:
            self.at.setdefault(v.level, {}).setdefault(pool, []).append(v)
            self.serial[id(v)] = len(self.seen)
            self.bytes += footprint(v.vec)
        self.seen[(pool, v.vec)] = v
        if observe:
            self.observe(v)
        return True

    def worth(self, kind: str, vec: tuple, level: int) -> bool:
        """Whether a value of ``kind``, ``vec`` and ``level`` could be kept (new, or of the
        size of the one kept)."""
        old = self.seen.get((pool_for(kind, vec), vec))
        return old is None or old.level == level

    def has(self, v: Value) -> bool:
        return (pool_of(v), v.vec) in self.seen

    def values(self, level: int, pool: str, new_only: bool = False) -> list[Value]:
        vs = self.at.get(level, {}).get(pool, [])
        return vs[self.mark.get((level, pool), 0):] if new_only else vs

    def new_epoch(self, sources: list[Value]) -> None:
        """Open an epoch with ``sources`` (tool results, observed already): the levels made
        next combine them."""
        self.epoch += 1
        self.full = max(self.at, default=0)
        self.mark = {(lvl, p): len(vs) for lvl, pools in self.at.items() for p, vs in pools.items()}
        self.deferred = {lvl: ops for lvl, ops in self.deferred.items() if lvl > self.full}
        for v in sources:
            self.add(v, observe=False)

    def stop(self) -> bool:
        """Whether a bound is reached (and which, the first time)."""
        if self.stopped_by or self.done:
            return True
        if self.share is not None and (len(self.seen) >= self.share[0] or
                                       self.tried >= self.share[1]):
            self.stopped_by = "share"
        elif len(self.seen) >= self.capacity:
            self.stopped_by = "values"
        elif self.bytes >= self.limits.memory << 20:
            self.stopped_by = "memory"
        elif self.tried >= self.limits.tried:
            self.stopped_by = "tried"
        elif self.tried % 256 == 0 and time.monotonic() >= self.deadline:
            self.stopped_by = "seconds"
        return bool(self.stopped_by)

    # -- making a level ------------------------------------------------------------------------
    def fill(self, level: int) -> None:
        """Make the values of ``level`` (in this epoch: those with a value of the epoch in
        them, up to the sizes made whole before)."""
        new_only = self.epoch > 0 and level <= self.full
        for pool in POOLS:
            for v in self.values(level - 1, pool, new_only):
                if self.stop():
                    return
                self._glue(v, level)
        for v, op in self.deferred.pop(level, []):
            if self.stop():
                return
            self._keep_glue(v, op)
        # the operations take turns, a slice each, so a bound reached inside a large size has
        # tried every operation alike (not the first ones alone)
        turns = [self._fn(name, level) for name in ORDER]
        while turns and not self.stop():
            turns = [t for t in turns if next(t, None) is not None]

    def _glue(self, v: Value, level: int) -> None:
        if len(v.via) >= self.limits.depth or v.kind == "bool":
            return
        for op in menu(v, raw=not v.via and v.fn is None):
            if op_level(op) == 1:
                self._keep_glue(v, op)
            else:
                self.deferred.setdefault(v.level + op_level(op), []).append((v, op))

    def _keep_glue(self, v: Value, op: Op) -> None:
        self.tried += 1
        vec = apply_op(op, v.vec)
        if self.worth(op.gives, vec, v.level + op_level(op)):
            self.add(v.then(op, vec))

    def _fn(self, name: str, level: int):
        """The values of ``level`` operation ``name`` makes, a slice of SLICE combinations at a
        time (a generator: it yields after each slice)."""
        f = FUNCTIONS[name]
        pools = [ARG_POOL[k] for k in f.takes]
        done = 0
        for sizes in _compositions(level - 1, len(pools)):
            groups = [self.values(s, p) for s, p in zip(sizes, pools)]
            if not all(groups):
                continue
            for args in self._combinations(sizes, pools, groups, level):
                done += 1
                if done % SLICE == 0:
                    yield True
                if not _worth(name, args):
                    continue
                self.tried += 1
                vec = apply_fn(f.fast, [a.vec for a in args])
                if self.worth(f.gives, vec, level):
                    self.add(fn_result(name, args, vec))

    def _combinations(self, sizes, pools, groups, level):
        """Every combination of one value a group (in this epoch, up to the sizes made whole
        before: with one of its values at least, each combination once: the first new one
        fixes the place)."""
        if self.epoch == 0 or level > self.full:
            yield from product(*groups)
            return
        marks = [self.mark.get((s, p), 0) for s, p in zip(sizes, pools)]
        for first in range(len(groups)):
            parts = [g[:m] for g, m in zip(groups[:first], marks[:first])] + \
                [groups[first][marks[first]:]] + groups[first + 1:]
            if all(parts):
                yield from product(*parts)


def _compositions(total: int, parts: int):
    """The ways to write ``total`` as ``parts`` sizes of 1 or more, in order."""
    if parts == 1:
        if total >= 1:
            yield (total,)
        return
    for first in range(1, total - parts + 2):
        for rest in _compositions(total - first, parts - 1):
            yield (first,) + rest


def _worth(name: str, args: tuple[Value, ...]) -> bool:
    """Whether a combination can give what no other order or constant gives: concat nests to
    the right, a commutative operation takes the smaller value first, an operation on
    constants alone is a constant, a text is cut from a value that varies."""
    if all(a.static for a in args):
        return False
    if name == "concat":
        first = args[0]
        nested = isinstance(first.fn, Fn) and first.fn.name == "concat" and not first.via
        return not nested and "" not in (first.const, args[1].const)
    if name in COMMUTATIVE:
        return args[0].level <= args[1].level and args[0] is not args[1]
    return not (name in SUBJECT and args[0].static)
