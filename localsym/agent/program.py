"""A node's program: its outputs computed from its inputs by the program language
(``agent/expr.py``: inputs, constants, glue, operations of several values, the node's tools,
choices), with no model call (what the synthesis engine finds, ``localsym.learn.synth``).

A program is one expression tree per output, and optionally a ``guard``: a condition on the
inputs under which the program answers (elsewhere the model does). It is data, written as
expressions (``answer: concat(first, ' ', last | slice(0, 1), '.')``), saved in the spec, shown
in the report, and bounded in size. At run time the node runs its program first: when the guard
holds, every tool call succeeds and every output fits its field, those outputs are the node's
with no model call; where it does not (a glue step that cannot apply, a tool that raises, the
guard false), the node goes on as if it had no program, so a program never makes an example
worse than the model would. An output that reads the model's own call (``called('calc')``,
what ``bind`` writes) is given when the model makes that call.

Specs written before the tree (``steps`` of tool calls and ``outputs`` as ``{source, const,
via}``) are read into the same trees."""

from __future__ import annotations

from typing import Annotated, Any

import regex
from pydantic import (Field, PlainSerializer, PlainValidator, TypeAdapter, WithJsonSchema,
                      model_validator)

from localsym.agent import chain
from localsym.agent import glue
from localsym.agent import expr as E
from localsym.agent.expr import Context, Expr, Scope
from localsym.agent.functions import truth
from localsym.agent.glue import GlueError
from localsym.agent.weights import Frozen


def _to_expr(value: Any) -> Expr:
    if isinstance(value, (E.Input, E.Const, E.Glue, E.Apply, E.Call, E.If, E.Called)):
        return value
    return E.parse(value)


# A program value in a spec: written and read as its expression
Expression = Annotated[Any, PlainValidator(_to_expr), PlainSerializer(E.text, return_type=str),
                       WithJsonSchema({"type": "string", "description": "a program expression"})]


class Program(Frozen):
    """One expression per output, and the guard under which they answer (see the module doc)."""

    outputs: dict[str, Expression] = Field(min_length=1)
    guard: Expression | None = None

    @model_validator(mode="before")
    @classmethod
    def _written_before(cls, data):
        if isinstance(data, dict) and ("steps" in data or any(
                isinstance(v, dict) for v in (data.get("outputs") or {}).values())):
            return _from_steps(data)
        return data

    def check(self, inputs: dict[str, Any], tools: tuple[str, ...], outputs: set[str]) -> None:
        """A ValueError unless every value reads an input of the node (``inputs``: name -> its
        kind, or None where not known), every tool is one of ``tools``, every output one of
        ``outputs``, and every part takes the kind it is given."""
        scope = Scope(dict(inputs), tuple(tools))
        for out, e in self.outputs.items():
            if out not in outputs:
                raise ValueError(f"the program gives {out!r}, which is not an output of the "
                                 f"node {sorted(outputs)}")
            try:
                E.check(e, scope)
            except ValueError as err:
                raise ValueError(f"program output {out!r}: {err}") from None
        if self.guard is not None:
            if E.uses_model(self.guard):
                raise ValueError("a program's guard reads the inputs, not the model's calls")
            E.check(self.guard, scope)

    def trees(self) -> list[Expr]:
        return list(self.outputs.values()) + ([self.guard] if self.guard is not None else [])

    def tools(self) -> list[str]:
        return list(dict.fromkeys(x.tool for t in self.trees() for x in E.walk(t)
                                  if isinstance(x, (E.Call, E.Called))))

    def tool_args(self) -> list[tuple[str, str]]:
        """(tool, argument name) of every call the program writes."""
        return list(dict.fromkeys((x.tool, a) for t in self.trees() for x in E.walk(t)
                                  if isinstance(x, E.Call) for a, _ in x.args))

    def lines(self) -> list[str]:
        """The program as a person reads it: a line per output, then its guard."""
        return [f"{o} = {E.text(e)}" for o, e in self.outputs.items()] + \
            ([f"where {E.text(self.guard)}"] if self.guard is not None else [])

    def describe(self) -> str:
        return "; ".join(self.lines())


def _from_steps(data: dict) -> dict:
    """A program written as steps (tool calls named ``r1``...) and ``{source, const, via}``
    values, as trees."""
    done: dict[str, Expr] = {}

    def value(ref: Any) -> Expr:
        if isinstance(ref, str):
            ref = {"source": ref}
        if not isinstance(ref, dict) or ("source" in ref) == ("const" in ref and
                                                              ref.get("const") is not None):
            raise ValueError("a program value names a source or a constant (one of the two)")
        start: Expr = (done.get(ref["source"]) or E.Input(ref["source"])) \
            if ref.get("source") is not None else E.Const(ref["const"])
        return E.via(start, _chain(ref.get("via", ())))

    for step in data.get("steps") or ():
        if not isinstance(step, dict) or not isinstance(step.get("args"), dict):
            raise ValueError("a program step is {name, tool, args}")
        done[step["name"]] = E.Call(step["tool"], tuple((a, value(r))
                                                        for a, r in step["args"].items()))
    return {**{k: v for k, v in data.items() if k not in ("steps", "outputs")},
            "outputs": {k: value(v) for k, v in (data.get("outputs") or {}).items()}}


def _chain(ops: Any) -> tuple:
    return _CHAIN.validate_python(ops)


_CHAIN: TypeAdapter = TypeAdapter(chain.Chain)


def argument(value: Any) -> Any:
    """A value as a tool argument: a list is not one; a number stays a number."""
    if isinstance(value, list):
        raise GlueError("a list cannot be a tool argument")
    return value


def fits(value: Any, field) -> bool:
    """Whether an output value fits its field's choices and pattern (the pattern checked under
    the glue's regex timeout: a pattern cannot stall a run)."""
    if field.choices and value not in field.choices:
        return False
    if field.pattern is not None:
        try:
            return regex.fullmatch(field.pattern, str(value), timeout=0.05) is not None
        except TimeoutError:
            return False
    return True


def coerce(value: Any, type_: str) -> Any:
    """A glued value as an output of ``type_`` (str, int, float; list[str] from a list); a
    ValueError or GlueError where it is not one."""
    if type_ == "list[str]":
        if not isinstance(value, list):
            raise ValueError("not a list")
        return [str(v) for v in value]
    if isinstance(value, list):
        raise ValueError("a list where one value is wanted")
    if type_ == "str":
        return glue.number_text(value) if chain.kind_of(value) == "number" else str(value)
    if type_ == "int":
        return glue.whole_number(value)
    if type_ == "float":
        return float(value)
    if type_ == "bool" and str(value).strip().lower() in ("true", "false"):
        return str(value).strip().lower() == "true"
    raise ValueError(f"a {type_} output is not bound")


def run_program(program: Program, fields: tuple, inputs: dict[str, Any], tools
                ) -> tuple[dict[str, Any], list, str | None]:
    """Run ``program`` on one example's ``inputs`` with the tool registry ``tools``: the outputs
    it gives (each coerced to its field ``fields`` and fitting it), the tool calls made, and why
    it failed (None: the guard held and every output succeeded). An output that reads the
    model's own call is left to the tool loop (``bound_outputs``)."""
    ctx = Context(inputs=dict(inputs), tools=tools)
    if program.guard is not None:
        try:
            if not truth(E.evaluate(program.guard, ctx)):
                return {}, ctx.made, "the guard does not hold"
        except GlueError as err:
            return {}, ctx.made, f"guard: {err}"
    by_name = {f.name: f for f in fields}
    out: dict[str, Any] = {}
    for name, e in program.outputs.items():
        if E.uses_model(e):
            continue
        try:
            value = coerce(E.evaluate(e, ctx), by_name[name].type)
        except (GlueError, TypeError, ValueError, OverflowError) as err:
            return out, ctx.made, f"output {name}: {err}"
        if not fits(value, by_name[name]):
            return out, ctx.made, f"output {name}: {str(value)[:60]!r} does not fit the field"
        out[name] = value
    return out, ctx.made, None
