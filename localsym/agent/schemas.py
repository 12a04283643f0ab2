"""The schemas a node is decoded under: its answer (typed outputs, a reasoning draft first, a
routing choice last), a tool's arguments (with the spec's patterns), and one step of a tool loop
(call one of the tools, or finish). Built once per shape (``lru_cache``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal, Union

from pydantic import Field, create_model

from localsym.agent.node import REASONING_FIELD
from localsym.agent.tools import ToolRegistry
from localsym.agent.weights import FieldSpec
from localsym.errors import ConfigError

PY_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "list[str]": list[str]}
ROUTE_FIELD = "next_step"


@lru_cache(maxsize=256)
def outputs_model(name: str, outputs: tuple[FieldSpec, ...], routes: tuple[str, ...],
                  reasoning: int = 0):
    """The schema of a node's answer: a free-text draft of at most ``reasoning`` characters
    first (if any), its typed outputs, and its routing choice if it has one."""
    fields: dict[str, Any] = {}
    if reasoning:
        fields[REASONING_FIELD] = (str, Field(max_length=reasoning))
    fields.update({
        f.name: (Literal[f.choices] if f.choices else PY_TYPES[f.type],
                 Field(description=f.description or None, pattern=f.pattern))
        for f in outputs})
    if len(routes) > 1:
        fields[ROUTE_FIELD] = (Literal[routes], ...)
    return create_model(f"{name}_output", **fields)


def args_model(registry: ToolRegistry, tool: str, patterns: tuple[tuple[str, str], ...] = ()):
    """A tool's argument schema, with the spec's argument patterns enforced on str arguments."""
    spec = registry.get(tool)
    base = spec.args_model
    if not patterns:
        return base
    fields = {}
    for arg, pattern in patterns:
        if arg not in spec.str_args():
            raise ConfigError(f"tool {tool!r} has a pattern for {arg!r}, which is not one of its "
                              f"str arguments ({spec.str_args()})",
                              "name a str argument of the tool, or drop the pattern")
        info = base.model_fields[arg]
        fields[arg] = (str, Field(... if info.is_required() else info.default, pattern=pattern))
    return create_model(f"{tool}_args", __base__=base, **fields)


@lru_cache(maxsize=256)
def step_model(name: str, outputs: tuple[FieldSpec, ...], routes: tuple[str, ...],
               tools: tuple[str, ...], registry: ToolRegistry, may_finish: bool = True,
               patterns: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (),
               reasoning: int = 0):
    """The schema of one tool-loop step: call one of the tools (typed args) or finish.
    ``patterns``: (tool, ((argument, regex), ...)) for the tools whose arguments have one."""
    by_tool = dict(patterns)
    variants = [create_model(f"call_{t}", tool=(Literal[t], ...),
                             args=(args_model(registry, t, by_tool.get(t, ())), ...))
                for t in tools]
    if may_finish:
        variants.append(create_model(f"{name}_finish", tool=(Literal["finish"], ...),
                                     outputs=(outputs_model(name, outputs, routes, reasoning),
                                              ...)))
    action = Annotated[Union[tuple(variants)], Field(discriminator="tool")] \
        if len(variants) > 1 else variants[0]
    return create_model(f"{name}_step", action=(action, ...))
