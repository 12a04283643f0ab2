"""Values, not chains: bottom-up enumeration with observational equivalence.

A ``Value`` is a small program (a node input, a constant or a tool call's result, then glue
operations) together with what it gives on each training example (its vector). ``grow``
enumerates values cheapest first from their sources, each operation's parameters induced from
the data (``menu.py``), and keeps one value per distinct vector: the cheapest (fewest operations,
shortest parameters). Every value carries its kind; an argument's annotation filters which
values it can take (``fits_annotation``)."""

from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from localsym.agent import chain
from localsym.agent.glue import GlueError, Op, whole_number
from localsym.learn.synth.menu import menu, op_cost

CALL_COST = 2000  # a tool call costs more than any short chain
CONST_COST = 2500  # a constant only where nothing cheaper fits
MISSING_COST = 300  # per example a value cannot be had on


@dataclass(frozen=True, eq=False)
class Call:
    """A tool call whose arguments are values."""

    tool: str
    args: tuple[tuple[str, "Value"], ...]


@dataclass(frozen=True, eq=False)
class Value:
    """A value and its vector over the training examples (None where it cannot be had)."""

    vec: tuple
    cost: int
    source: str | None = None  # a node input
    const: Any = None
    call: Call | None = None
    via: tuple[Op, ...] = ()
    kind: str = "text"

    @property
    def defined(self) -> int:
        return sum(v is not None for v in self.vec)

    def then(self, op: Op, vec: tuple) -> "Value":
        return Value(vec=vec, cost=self.cost + op_cost(op) + MISSING_COST *
                     (sum(v is None for v in vec) - sum(v is None for v in self.vec)),
                     source=self.source, const=self.const, call=self.call, via=self.via + (op,),
                     kind=op.gives)

    def calls(self) -> list[Call]:
        """The tool calls this value needs, innermost first."""
        if self.call is None:
            return []
        inner = [c for _, v in self.call.args for c in v.calls()]
        return list(dict.fromkeys(inner + [self.call]))

    def describe(self) -> str:
        start = self.source if self.source is not None else (
            f"{self.call.tool}(...)" if self.call is not None else repr(self.const))
        return " | ".join([start] + [op.describe() for op in self.via])


def source(name: str, vec: tuple) -> Value:
    return Value(vec=tuple(_hashable(v) for v in vec), cost=0, source=name, kind=_kind(vec))


def constant(value: Any, rows: int) -> Value:
    return Value(vec=(value,) * rows, cost=CONST_COST + len(str(value)), const=value,
                 kind=chain.kind_of(value))


def call_result(call: Call, vec: tuple) -> Value:
    return Value(vec=vec, cost=CALL_COST + sum(v.cost for _, v in call.args), call=call)


def apply_op(op: Op, vec: tuple) -> tuple:
    """``op`` on every entry of ``vec`` (None where it cannot apply)."""
    out: list[Any] = []
    for v in vec:
        if v is None:
            out.append(None)
            continue
        try:
            r = chain.run((op,), list(v) if isinstance(v, tuple) else v)
        except (GlueError, ValueError, TypeError, OverflowError, RecursionError):
            out.append(None)
            continue
        out.append(_hashable(r))
    return tuple(out)


@dataclass
class Grown:
    """What ``grow`` kept, and what it cost."""

    values: list[Value] = field(default_factory=list)
    tried: int = 0


def grow(seeds: list[Value], depth: int, limit: int, deadline: float, min_defined: int,
         seen: dict | None = None) -> Grown:
    """Values from ``seeds`` by up to ``depth`` more operations each, cheapest first, one per
    distinct vector (``seen``: vectors already kept elsewhere, shared), at most ``limit`` of
    them, each defined on at least ``min_defined`` examples; stops at ``deadline``."""
    seen = {} if seen is None else seen
    order = itertools.count()
    heap = [(v.cost, next(order), v) for v in seeds]
    heapq.heapify(heap)
    out = Grown()
    while heap and len(out.values) < limit and time.monotonic() < deadline:
        _, _, v = heapq.heappop(heap)
        if v.vec in seen or v.defined < min_defined:
            continue
        seen[v.vec] = v
        out.values.append(v)
        if len(v.via) >= depth:
            continue
        for op in menu(v, raw=not v.via):
            out.tried += 1
            vec = apply_op(op, v.vec)
            if vec not in seen and sum(x is not None for x in vec) >= min_defined:
                child = v.then(op, vec)
                heapq.heappush(heap, (child.cost, next(order), child))
    return out


def fits_annotation(v: Value, annotation: Any) -> bool:
    """Whether every entry of ``v`` can be an argument of this annotation."""
    entries = [x for x in v.vec if x is not None]
    if not entries or any(isinstance(x, tuple) for x in entries):
        return False
    try:
        if annotation is int:
            return all(not isinstance(whole_number(str(x)), bool) for x in entries)
        if annotation is float:
            return all(float(str(x)) == float(str(x)) for x in entries)
    except (GlueError, ValueError, OverflowError):
        return False
    if annotation is bool:
        return all(str(x).strip().lower() in ("true", "false") for x in entries)
    return annotation is str and all(isinstance(x, str) for x in entries)


def _hashable(v: Any) -> Any:
    return tuple(str(x) for x in v) if isinstance(v, list) else v


def _kind(vec: tuple) -> str:
    kinds = {chain.kind_of(list(v) if isinstance(v, tuple) else v) for v in vec if v is not None}
    return kinds.pop() if len(kinds) == 1 else "text"
