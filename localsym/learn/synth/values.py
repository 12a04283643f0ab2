"""Values: a small program and what it gives on each row the search runs on.

A ``Value`` is a program tree (``agent/expr.py``) kept as its root and its glue: the root an
input, a constant, an operation of several values (``Fn``), a tool call (``Call``) or a choice
(``Cond``), then the glue operations on it (``via``). Its vector is what it gives on each row
(the training rows, then the unlabeled inputs the run has), None where it cannot be had. It has
a ``level`` (its size: the enumeration goes level by level, ``bank.py``) and a ``cost`` (finer:
how much it assumes, what the wiring of a tool ranks by). Every value carries its kind (``text``,
``number``, ``list``, ``bool``); an argument's annotation filters the values it can take
(``fits_annotation``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from localsym.agent import chain
from localsym.agent import expr as E
from localsym.agent.functions import FUNCTIONS
from localsym.agent.glue import MAX_ITEMS, MAX_TEXT, GlueError, Op, number_text, whole_number
from localsym.learn.synth.menu import op_cost, op_level

CALL_COST = 2000  # a tool call costs more than any short chain
CONST_COST = 2500  # a constant only where nothing cheaper fits
FN_COST = 1000  # an operation of several values
MISSING_COST = 300  # per example a value cannot be had on
# what a step that cannot apply raises
FAILS = (GlueError, ValueError, TypeError, ArithmeticError, IndexError, RecursionError,
         MemoryError)


@dataclass(frozen=True, eq=False)
class Call:
    """A tool call whose arguments are values."""

    tool: str
    args: tuple[tuple[str, "Value"], ...]


@dataclass(frozen=True, eq=False)
class Fn:
    """An operation of several values (``agent/functions.py``)."""

    name: str
    args: tuple["Value", ...]


@dataclass(frozen=True, eq=False)
class Cond:
    """``then`` where ``cond`` holds, else ``other``."""

    cond: "Value"
    then: "Value"
    other: "Value"


@dataclass(frozen=True, eq=False)
class Value:
    """A program and its vector over the rows (None where it cannot be had)."""

    vec: tuple
    cost: int
    level: int = 1
    source: str | None = None  # a node input
    const: Any = None
    call: Call | None = None
    fn: Fn | Cond | None = None
    via: tuple[Op, ...] = ()
    kind: str = "text"
    static: bool = False  # made of constants only: the same on every row, whatever the rows

    @property
    def defined(self) -> int:
        return sum(v is not None for v in self.vec)

    def then(self, op: Op, vec: tuple) -> "Value":
        return Value(vec=vec, cost=self.cost + op_cost(op) + MISSING_COST *
                     (sum(v is None for v in vec) - sum(v is None for v in self.vec)),
                     level=self.level + op_level(op), source=self.source, const=self.const,
                     call=self.call, fn=self.fn, via=self.via + (op,), kind=op.gives,
                     static=self.static)

    def parts(self) -> list["Value"]:
        """The values this one is made of (its root's arguments)."""
        if self.call is not None:
            return [v for _, v in self.call.args]
        if isinstance(self.fn, Fn):
            return list(self.fn.args)
        if isinstance(self.fn, Cond):
            return [self.fn.cond, self.fn.then, self.fn.other]
        return []

    def calls(self) -> list[Call]:
        """The tool calls this value needs, innermost first."""
        inner = [c for v in self.parts() for c in v.calls()]
        out = inner + ([self.call] if self.call is not None else [])
        return [c for i, c in enumerate(out) if all(c is not d for d in out[:i])]

    def tree(self) -> E.Expr:
        """The program tree of this value."""
        start: E.Expr
        if self.call is not None:
            start = E.Call(self.call.tool, tuple((a, v.tree()) for a, v in self.call.args))
        elif isinstance(self.fn, Fn):
            args = tuple(v.tree() for v in self.fn.args)
            start = E.concat(*args) if self.fn.name == "concat" else E.Apply(self.fn.name, args)
        elif isinstance(self.fn, Cond):
            start = E.If(self.fn.cond.tree(), self.fn.then.tree(), self.fn.other.tree())
        elif self.source is not None:
            start = E.Input(self.source)
        else:
            start = E.Const(self.const)
        return E.via(start, self.via)

    def describe(self) -> str:
        return E.text(self.tree())


def source(name: str, vec: tuple) -> Value:
    return Value(vec=tuple(_hashable(v) for v in vec), cost=0, level=1, source=name,
                 kind=_kind(vec))


def constant(value: Any, rows: int, level: int = 1) -> Value:
    kind = "bool" if isinstance(value, bool) else chain.kind_of(value)
    return Value(vec=(value,) * rows, cost=CONST_COST + len(str(value)), level=level,
                 const=value, kind=kind, static=True)


def call_result(call: Call, vec: tuple, level: int = 2) -> Value:
    return Value(vec=vec, cost=CALL_COST + sum(v.cost for _, v in call.args), level=level,
                 call=call)


def fn_result(name: str, args: tuple[Value, ...], vec: tuple) -> Value:
    return Value(vec=vec, cost=FN_COST + sum(v.cost for v in args),
                 level=1 + sum(v.level for v in args), fn=Fn(name, args),
                 kind=FUNCTIONS[name].gives, static=all(v.static for v in args))


def cond_result(cond: Value, then: Value, other: Value, vec: tuple) -> Value:
    return Value(vec=vec, cost=FN_COST + cond.cost + then.cost + other.cost,
                 level=1 + cond.level + then.level + other.level, fn=Cond(cond, then, other),
                 kind=then.kind)


def apply_op(op: Op, vec: tuple) -> tuple:
    """``op`` on every entry of ``vec`` (None where it cannot apply), as the interpreter reads
    each entry: a number as its text where text is taken, a truth value as ``true``/``false``,
    a list as the list of its items."""
    takes = op.takes
    out: list[Any] = []
    for e in vec:
        if e is None:
            out.append(None)
            continue
        if takes == "list":
            if not isinstance(e, tuple):
                out.append(None)
                continue
            arg: Any = list(e)
        elif isinstance(e, bool):
            arg = "true" if e else "false"
        elif isinstance(e, (int, float)):
            arg = e if takes == "number" else number_text(e)
        elif takes == "number" or isinstance(e, tuple):
            out.append(None)
            continue
        else:
            arg = e
        try:
            r = op(arg)
        except FAILS:
            out.append(None)
            continue
        if isinstance(r, list):
            out.append(tuple(str(x) for x in r) if len(r) <= MAX_ITEMS else None)
        else:
            out.append(r if not isinstance(r, str) or len(r) <= MAX_TEXT else None)
    return tuple(out)



def fits_annotation(v: Value, annotation: Any) -> bool:
    """Whether every entry of ``v`` can be an argument of this annotation."""
    entries = [x for x in v.vec if x is not None]
    if not entries or any(isinstance(x, tuple) for x in entries):
        return False
    try:
        if annotation is int:
            return all(not isinstance(x, bool) and not isinstance(whole_number(str(x)), bool)
                       for x in entries)
        if annotation is float:
            return all(not isinstance(x, bool) and float(str(x)) == float(str(x))
                       for x in entries)
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
