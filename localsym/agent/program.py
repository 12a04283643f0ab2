"""A node's program: its outputs computed from its inputs by declared tools and glue, with no
model call (the wiring the synthesis engine finds, ``localsym.learn.synth``).

A program is a few steps, each one call of a declared tool whose arguments are values (an input
of the node, an earlier step's result, or a constant, each through a glue chain), and outputs,
each a value. It is data (saved in the spec, shown in the report) and bounded (at most
``MAX_STEPS`` steps). At run time the node runs its program first: when every step succeeds and
every output it gives fits its field, those outputs are the node's with no model call; where a
step fails on an example (a glue step that cannot apply, a tool that raises), the node goes on
as if it had no program, so a program never makes an example worse than the model would."""

from __future__ import annotations

from typing import Any

import regex
from pydantic import Field, model_validator

from localsym.agent import chain
from localsym.agent.chain import Chain
from localsym.agent import glue
from localsym.agent.glue import GlueError
from localsym.agent.weights import Frozen, Identifier

MAX_STEPS = 4  # tool calls in one program


class Ref(Frozen):
    """A value of a program: a node input or an earlier step's result (``source``), or a
    constant (``const``), reshaped by the glue ``via``. Written as the source's bare name when
    there is no glue."""

    source: str | None = None
    const: str | int | float | None = None
    via: Chain = ()

    @model_validator(mode="after")
    def _one_origin(self):
        if (self.source is None) == (self.const is None):
            raise ValueError("a program value names a source or a constant (one of the two)")
        if isinstance(self.const, str) and len(self.const) > 200:
            raise ValueError("a program constant is at most 200 characters")
        return self

    def describe(self) -> str:
        start = self.source if self.source is not None else repr(self.const)
        return " | ".join([start] + ([chain.describe(self.via)] if self.via else []))


def _ref(value: Any) -> Any:
    return {"source": value} if isinstance(value, str) else value


class Step(Frozen):
    """One call of a declared tool, its arguments program values; its result is named."""

    name: str = Identifier
    tool: str
    args: dict[str, Ref] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _bare_args(cls, data):
        if isinstance(data, dict) and isinstance(data.get("args"), dict):
            data = {**data, "args": {k: _ref(v) for k, v in data["args"].items()}}
        return data

    def describe(self) -> str:
        args = ", ".join(f"{a} = {r.describe()}" for a, r in self.args.items())
        return f"{self.name} = {self.tool}({args})"


class Program(Frozen):
    """Tool calls in order and the outputs they give (see the module doc)."""

    steps: tuple[Step, ...] = Field((), max_length=MAX_STEPS)
    outputs: dict[str, Ref] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _bare_outputs(cls, data):
        if isinstance(data, dict) and isinstance(data.get("outputs"), dict):
            data = {**data, "outputs": {k: _ref(v) for k, v in data["outputs"].items()}}
        return data

    def check(self, inputs: dict[str, Any], tools: tuple[str, ...], outputs: set[str]) -> None:
        """A ValueError unless every value's source is known before it is used (``inputs``:
        input name -> its kind, or None where not known), every tool is one of ``tools``, every
        output one of ``outputs``, and every glue chain fits the kind it starts from."""
        kinds: dict[str, Any] = dict(inputs)
        for step in self.steps:
            if step.tool not in tools:
                raise ValueError(f"program step {step.name!r} calls {step.tool!r}, which the node "
                                 f"does not use (its tools: {list(tools)})")
            for arg, ref in step.args.items():
                _check_ref(ref, kinds, f"program step {step.name!r} argument {arg!r}")
            if step.name in kinds:
                raise ValueError(f"program step {step.name!r} reuses the name of an input or an "
                                 "earlier step")
            kinds[step.name] = "text"  # a tool's result is a text
        for out, ref in self.outputs.items():
            if out not in outputs:
                raise ValueError(f"the program gives {out!r}, which is not an output of the "
                                 f"node {sorted(outputs)}")
            _check_ref(ref, kinds, f"program output {out!r}")

    def tools(self) -> list[str]:
        return list(dict.fromkeys(s.tool for s in self.steps))

    def lines(self) -> list[str]:
        """The program as a person reads it: a line per step, then a line per output."""
        return [s.describe() for s in self.steps] + \
            [f"{o} = {r.describe()}" for o, r in self.outputs.items()]

    def describe(self) -> str:
        return "; ".join(self.lines())


def _check_ref(ref: Ref, kinds: dict[str, Any], where: str) -> None:
    if ref.source is not None and ref.source not in kinds:
        raise ValueError(f"{where} reads {ref.source!r}, which is not an input of the node or "
                         f"an earlier step ({sorted(kinds)})")
    start = kinds.get(ref.source) if ref.source is not None else chain.kind_of(ref.const)
    try:
        chain.check_chain(ref.via, start)  # type: ignore[arg-type]
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def value_of(ref: Ref, values: dict[str, Any]) -> Any:
    """A program value on one example (``values``: the node's inputs and the results so far);
    a GlueError where it cannot be had."""
    start = ref.const if ref.source is None else values.get(ref.source)
    return chain.run(ref.via, start) if ref.via else start


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
    it failed (None: every step and every output succeeded)."""
    values: dict[str, Any] = dict(inputs)
    calls: list = []
    for step in program.steps:
        try:
            args = {a: argument(value_of(r, values)) for a, r in step.args.items()}
        except GlueError as err:
            return {}, calls, f"step {step.name}: glue: {err}"
        call = tools.call(step.tool, args)
        calls.append(call)
        if not call.ok:
            return {}, calls, f"step {step.name}: {call.tool} failed: {call.error}"
        values[step.name] = call.result
    by_name = {f.name: f for f in fields}
    out: dict[str, Any] = {}
    for name, ref in program.outputs.items():
        try:
            value = coerce(value_of(ref, values), by_name[name].type)
        except (GlueError, TypeError, ValueError, OverflowError) as err:
            return out, calls, f"output {name}: {err}"
        if not fits(value, by_name[name]):
            return out, calls, f"output {name}: {str(value)[:60]!r} does not fit the field"
        out[name] = value
    return out, calls, None
