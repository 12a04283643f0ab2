"""The program language: one typed expression tree for everything a node computes without
the model.

A program value is an input of the node (``question``), a constant (``'Mr. '``, ``3``), a glue
operation on a value (``question | after(': ')``, ``words | item(0)``), an operation of several
values (``concat(first, ' ', last)``, ``substr(s, 0, find(s, '@'))``, ``a + 1``, ``contains(s,
'.')``), a call of a declared tool with values as arguments (``convert(amount=question | numbers
| item(0), unit='km')``), a choice (``a if contains(s, '.') else b``), or the result of the
model's own last call of a tool (``called('calc')``: what a ``bind`` reads). ``arg_from``,
``bind`` and glue chains are written forms of these trees.

A tree is written and read as a short expression in Python's syntax, parsed by ``ast`` (never
evaluated by Python): the text in the spec, the report and the trace is the program itself,
and ``parse(text(e)) == e``. Every tree is checked kind by kind (``check``) and bounded in size.
``evaluate`` runs one on one example; a step that cannot apply raises ``GlueError``."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from typing import Any, Union

from pydantic import ValidationError

from localsym.agent import chain
from localsym.agent.functions import FUNCTIONS, INFIX, fits, truth
from localsym.agent.glue import OP_TYPES, GlueError, Op

MAX_NODES = 160  # operations, values and calls in one tree
MAX_SOURCE = 6000  # characters of a tree's text


@dataclass(frozen=True)
class Input:
    name: str


@dataclass(frozen=True)
class Const:
    value: str | int | float | bool


@dataclass(frozen=True)
class Glue:
    """A glue operation (``agent/glue.py``) on one value."""

    op: Op
    arg: "Expr"


@dataclass(frozen=True)
class Apply:
    """An operation of several values (``agent/functions.py``)."""

    fn: str
    args: tuple["Expr", ...]


@dataclass(frozen=True)
class Call:
    """A call of a declared tool, its arguments values."""

    tool: str
    args: tuple[tuple[str, "Expr"], ...]


@dataclass(frozen=True)
class If:
    cond: "Expr"
    then: "Expr"
    other: "Expr"


@dataclass(frozen=True)
class Called:
    """The result of the model's last call of ``tool`` in this node run (what ``bind`` reads)."""

    tool: str


Expr = Union[Input, Const, Glue, Apply, Call, If, Called]


def children(e: Expr) -> tuple[Expr, ...]:
    if isinstance(e, Glue):
        return (e.arg,)
    if isinstance(e, Apply):
        return e.args
    if isinstance(e, Call):
        return tuple(v for _, v in e.args)
    if isinstance(e, If):
        return (e.cond, e.then, e.other)
    return ()


def walk(e: Expr):
    """Every node of the tree, the root first."""
    yield e
    for c in children(e):
        yield from walk(c)


def size(e: Expr) -> int:
    return sum(1 for _ in walk(e))


def calls(e: Expr) -> list[Call]:
    """The tool calls of the tree, innermost first, each once."""
    out: list[Call] = []
    for c in children(e):
        out += [x for x in calls(c) if x not in out]
    if isinstance(e, Call) and e not in out:
        out.append(e)
    return out


def uses_model(e: Expr) -> bool:
    """Whether the tree reads the model's own call of a tool (it runs after the model)."""
    return any(isinstance(x, Called) for x in walk(e))


def concat(*parts: Expr) -> Expr:
    """``concat`` of the parts, nested ones flattened (concat is associative: one tree for
    one text)."""
    flat: list[Expr] = []
    for p in parts:
        flat += list(p.args) if isinstance(p, Apply) and p.fn == "concat" else [p]
    return Apply("concat", tuple(flat))


def via(start: Expr, ops: tuple) -> Expr:
    """``start`` through a glue chain."""
    for op in ops:
        start = Glue(op, start)
    return start


# -- text -----------------------------------------------------------------------------------
_LEVEL = {"if": 1, "or": 2, "and": 3, "not": 4, "==": 5, "<": 5, "<=": 5, "|": 6, "+": 7,
          "-": 7}


def text(e: Expr) -> str:
    """The tree as a person (and ``parse``) reads it."""
    return _text(e)[0]


def _wrap(e: Expr, level: int, right: bool = False) -> str:
    s, own = _text(e)
    return f"({s})" if own < level or (right and own == level) else s


def _text(e: Expr) -> tuple[str, int]:
    if isinstance(e, Input):
        return e.name, 10
    if isinstance(e, Const):
        return _literal(e.value), 10 if not (isinstance(e.value, (int, float)) and
                                             e.value < 0) else 8
    if isinstance(e, Called):
        return f"called({e.tool!r})", 10
    if isinstance(e, Glue):
        return f"{_wrap(e.arg, 6)} | {op_text(e.op)}", 6
    if isinstance(e, Call):
        return f"{e.tool}(" + ", ".join(f"{a}={_text(v)[0]}" for a, v in e.args) + ")", 10
    if isinstance(e, If):
        return f"{_wrap(e.then, 2)} if {_wrap(e.cond, 2)} else {_wrap(e.other, 1)}", 1
    f = FUNCTIONS[e.fn]
    if f.infix == "not":
        return f"not {_wrap(e.args[0], 4)}", 4
    if f.infix:
        lvl = _LEVEL[f.infix]
        left = lvl + 1 if f.infix in ("==", "<", "<=") else lvl  # a < b < c is a chain
        return f"{_wrap(e.args[0], left)} {f.infix} {_wrap(e.args[1], lvl, right=True)}", lvl
    return f"{e.fn}(" + ", ".join(_text(a)[0] for a in e.args) + ")", 10


def _literal(value: Any) -> str:
    """A constant as written: a text with backslashes (a pattern) as a raw string."""
    if isinstance(value, str) and "\\" in value and "'" not in value and \
            not value.endswith("\\") and value.isprintable():
        return f"r'{value}'"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _params(op_type) -> list[str]:
    return [k for k in op_type.model_fields if k not in ("op", "takes", "gives")]


def op_text(op: Op) -> str:
    """A glue operation as it is written after ``|``: its parameters in order, by name once
    one is left at its default."""
    values = op.model_dump(exclude={"op", "takes", "gives"})
    given = op.model_dump(exclude_defaults=True, exclude={"op", "takes", "gives"})
    parts, named = [], False
    for k in _params(type(op)):
        if k not in given:
            named = True
            continue
        parts.append(f"{k}={_literal(values[k])}" if named else _literal(values[k]))
    name = op.op  # type: ignore[attr-defined]
    return f"{name}({', '.join(parts)})" if parts else name


# -- parse ----------------------------------------------------------------------------------
def parse(source: str) -> Expr:
    """The tree a text writes; a ValueError names what is not part of the language."""
    if not isinstance(source, str):
        raise ValueError(f"a program value is written as text, not {type(source).__name__}")
    if len(source) > MAX_SOURCE:
        raise ValueError(f"a program value is at most {MAX_SOURCE} characters")
    try:
        tree = ast.parse(source.strip(), mode="eval").body
    except (SyntaxError, RecursionError, MemoryError) as err:
        raise ValueError(f"{source[:80]!r} is not a program expression "
                         f"({getattr(err, 'msg', type(err).__name__)})") from None
    try:
        out = _node(tree)
    except RecursionError:
        raise ValueError(f"{source[:80]!r} is nested too deeply") from None
    if size(out) > MAX_NODES:
        raise ValueError(f"a program value has at most {MAX_NODES} parts, not {size(out)}")
    return out


def _const(node: ast.AST) -> Any:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and \
            isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float):
        return -node.operand.value  # type: ignore[operator]
    if isinstance(node, ast.Constant) and type(node.value) in (str, int, float, bool):
        return node.value
    if isinstance(node, ast.Dict):
        return {_const(k): _const(v) for k, v in zip(node.keys, node.values)}  # type: ignore
    raise ValueError(f"{ast.unparse(node)[:60]!r} is not a constant")


def _node(node: ast.AST) -> Expr:
    if isinstance(node, ast.Name):
        return Input(node.id)
    if isinstance(node, (ast.Constant, ast.UnaryOp)) and not (
            isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)):
        return Const(_const(node))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return Glue(_glue_op(node.right), _node(node.left))
    if isinstance(node, ast.BinOp) and type(node.op) in (ast.Add, ast.Sub):
        return Apply("add" if isinstance(node.op, ast.Add) else "sub",
                     (_node(node.left), _node(node.right)))
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        sym = {ast.Eq: "==", ast.Lt: "<", ast.LtE: "<="}.get(type(node.ops[0]))
        if sym is not None:
            return Apply(INFIX[sym], (_node(node.left), _node(node.comparators[0])))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return Apply("not", (_node(node.operand),))
    if isinstance(node, ast.BoolOp):
        name = "and" if isinstance(node.op, ast.And) else "or"
        out = _node(node.values[0])
        for v in node.values[1:]:
            out = Apply(name, (out, _node(v)))
        return out
    if isinstance(node, ast.IfExp):
        return If(_node(node.test), _node(node.body), _node(node.orelse))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return _call(node)
    raise ValueError(f"{ast.unparse(node)[:60]!r} is not part of the program language")


def _call(node: ast.Call) -> Expr:
    name = node.func.id  # type: ignore[attr-defined]
    if name == "called":
        if len(node.args) != 1 or node.keywords or not isinstance(_const(node.args[0]), str):
            raise ValueError("called takes one tool name: called('calc')")
        return Called(_const(node.args[0]))
    if node.keywords:  # a tool: its arguments by name
        if node.args or any(k.arg is None for k in node.keywords):
            raise ValueError(f"tool {name!r} takes its arguments by name: {name}(arg=value)")
        return Call(name, tuple((k.arg, _node(k.value)) for k in node.keywords))  # type: ignore
    if name not in FUNCTIONS or FUNCTIONS[name].infix:
        known = sorted(n for n, f in FUNCTIONS.items() if not f.infix)
        raise ValueError(f"{name!r} is not an operation of the program language ({known}); "
                         "a tool is called with its arguments by name, a glue operation "
                         "after '|'")
    args = tuple(_node(a) for a in node.args)
    if name == "concat" and len(args) >= 2:
        return concat(*args)
    if len(args) != len(FUNCTIONS[name].takes):
        raise ValueError(f"{name} takes {len(FUNCTIONS[name].takes)} values, not {len(args)}")
    return Apply(name, args)


def _glue_op(node: ast.AST) -> Op:
    name, args, kwargs = None, [], {}
    if isinstance(node, ast.Name):
        name = node.id
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name = node.func.id
        args = [_const(a) for a in node.args]
        kwargs = {str(k.arg): _const(k.value) for k in node.keywords}
    if name not in OP_TYPES:
        raise ValueError(f"after '|' comes a glue operation ({sorted(OP_TYPES)}), not "
                         f"{ast.unparse(node)[:40]!r}")
    params = _params(OP_TYPES[name])
    if len(args) > len(params):
        raise ValueError(f"glue {name} takes at most {len(params)} parameters")
    try:
        return OP_TYPES[name](**dict(zip(params, args)), **kwargs)
    except (ValidationError, TypeError, ValueError) as err:
        msg = err.errors()[0]["msg"] if isinstance(err, ValidationError) else str(err)
        raise ValueError(f"glue {name}: {msg}") from None


# -- kinds ----------------------------------------------------------------------------------
@dataclass
class Scope:
    """What a tree may read: the node's inputs (name -> kind, None: not known) and its tools."""

    inputs: dict[str, Any]
    tools: tuple[str, ...] = ()


def check(e: Expr, scope: Scope) -> Any:
    """The kind ``e`` gives, after checking every part takes what it is given; a ValueError
    names the first part that does not fit (None: the kind is not known)."""
    if isinstance(e, Input):
        if e.name not in scope.inputs:
            raise ValueError(f"the program reads {e.name!r}, which is not an input of the "
                             f"node ({sorted(scope.inputs)})")
        return scope.inputs[e.name]
    if isinstance(e, Const):
        return "bool" if isinstance(e.value, bool) else chain.kind_of(e.value)
    if isinstance(e, (Called, Call)):
        if e.tool not in scope.tools:
            raise ValueError(f"the program calls {e.tool!r}, which the node does not use (its "
                             f"tools: {list(scope.tools)})")
        for a, v in e.args if isinstance(e, Call) else ():
            kind = check(v, scope)
            if kind == "list":
                raise ValueError(f"{e.tool}({a}=...) is given a list: a tool takes one value")
        return "text"  # a tool's result is a text
    if isinstance(e, Glue):
        given = check(e.arg, scope)
        try:
            return chain.check_chain((e.op,), "text" if given == "bool" else given)
        except ValueError as err:
            raise ValueError(f"{text(e)[:80]}: {err}") from None
    if isinstance(e, If):
        if check(e.cond, scope) not in ("bool", "text", None):  # a tool's result: true/false
            raise ValueError(f"the condition of {text(e)[:80]} is not true or false")
        a, b = check(e.then, scope), check(e.other, scope)
        if a != b and "list" in (a, b):
            raise ValueError(f"the two branches of {text(e)[:80]} give a {a} and a {b}")
        return a if a == b else "text"
    f = FUNCTIONS[e.fn]
    for want, arg in zip(f.takes if f.name != "concat" else ("text",) * len(e.args), e.args):
        got = check(arg, scope)
        if not fits(want, got) and not (want == "bool" and got == "text"):
            raise ValueError(f"{f.name} takes a {want}, but {text(arg)[:60]} gives a {got}")
    return f.gives


# -- evaluation -----------------------------------------------------------------------------
@dataclass
class Context:
    """One example: the node's inputs, the tool registry (``call(tool, args)``), the calls made
    (each recorded), the results of the model's own calls (``called``)."""

    inputs: dict[str, Any]
    tools: Any = None
    made: list = field(default_factory=list)
    called: dict[str, Any] = field(default_factory=dict)
    memo: dict[str, Any] = field(default_factory=dict)


class ToolFailed(GlueError):
    """A tool call of the program failed (its record is in ``Context.made``)."""


def evaluate(e: Expr, ctx: Context) -> Any:
    """The value of ``e`` on one example; a GlueError where a part cannot apply (a ToolFailed
    where a tool call failed)."""
    if isinstance(e, Input):
        if e.name not in ctx.inputs:
            raise GlueError(f"no input {e.name!r}")
        return ctx.inputs[e.name]
    if isinstance(e, Const):
        return e.value
    if isinstance(e, Glue):
        value = evaluate(e.arg, ctx)
        return chain.run((e.op,), "true" if value is True else "false" if value is False
                         else value)
    if isinstance(e, If):
        return evaluate(e.then if truth(evaluate(e.cond, ctx)) else e.other, ctx)
    if isinstance(e, Apply):
        values = [evaluate(a, ctx) for a in e.args]
        takes = FUNCTIONS[e.fn].takes
        if any(isinstance(v, list) and (e.fn == "concat" or takes[i] != "list")
               for i, v in enumerate(values)):
            raise GlueError(f"{e.fn} takes single values, not a list")
        try:
            return FUNCTIONS[e.fn](*values)
        except GlueError:
            raise
        except (ArithmeticError, ValueError, TypeError) as err:
            raise GlueError(f"{e.fn} cannot apply ({type(err).__name__})") from None
    if isinstance(e, Called):
        if e.tool not in ctx.called:
            raise GlueError(f"the model made no call of {e.tool!r}")
        return ctx.called[e.tool]
    return _call_tool(e, ctx)


def _call_tool(e: Call, ctx: Context) -> Any:
    args = {}
    for a, v in e.args:
        value = evaluate(v, ctx)
        if isinstance(value, list):
            raise GlueError("a list cannot be a tool argument")
        args[a] = value
    key = json.dumps([e.tool, args], sort_keys=True, default=str)
    if key not in ctx.memo:
        record = ctx.tools.call(e.tool, args)
        ctx.made.append(record)
        ctx.memo[key] = record
    record = ctx.memo[key]
    if not record.ok:
        raise ToolFailed(f"{e.tool} failed: {record.error}")
    return record.result
