"""Bindings at run time: the first call a spec writes (``arg_from``) and the outputs bound to a
tool's result (``bind``), each through its glue (``localsym.agent.glue``); and the two ways a
node spends more model calls on one answer (``vote``, ``check``)."""

from __future__ import annotations

import json
from typing import Any

from localsym.agent import expr as E
from localsym.agent import glue
from localsym.agent.expr import Context
from localsym.agent.node import NodeSpec
from localsym.agent.program import coerce, fits
from localsym.agent.tools import ToolCallRecord, ToolRegistry


def wired_call(node: NodeSpec, inputs: dict[str, Any]) -> tuple[str, dict] | None:
    """The node's first tool call as its spec writes it (``arg_from``, each argument through its
    glue), or None; a ``GlueError`` where the glue cannot apply to these inputs."""
    call = node.written_call()
    if call is None:
        return None
    ctx = Context(inputs=inputs)
    return call.tool, {a: E.evaluate(v, ctx) for a, v in call.args}


def glue_failure(node: NodeSpec, err: glue.GlueError) -> ToolCallRecord:
    """The record of a written call whose glue did not apply: a failed call, made by no one."""
    return ToolCallRecord(tool=node.call_tool or "", args={}, error=f"glue: {err}")


def bound_outputs(node: NodeSpec, call: ToolCallRecord) -> dict[str, Any]:
    """The outputs of ``node`` bound to the tool of ``call``, read from its result through their
    glue (a failed call, a glue step that cannot apply, or a value that does not parse as the
    field's type or fit its choices or pattern binds nothing: the model writes it instead)."""
    if not call.ok:
        return {}
    out = {}
    ctx = Context(inputs={}, called={call.tool: call.result})
    bound = node.bound_values()
    for f in node.outputs:
        if f.name not in bound or call.tool not in {x.tool for x in E.walk(bound[f.name])
                                                     if isinstance(x, E.Called)}:
            continue
        try:
            value = coerce(E.evaluate(bound[f.name], ctx), f.type)
        except (glue.GlueError, TypeError, ValueError, OverflowError):
            continue
        if not fits(value, f):
            continue  # the field's own constraint stands (checked under a timeout)
        out[f.name] = value
    return out


def majority(outputs: list[dict[str, Any] | None]) -> int:
    """The index of the outputs most runs gave (None: a failed run, never chosen unless all
    failed); a tie goes to the earliest."""
    keys = [json.dumps(o, sort_keys=True, default=str) if o is not None else None
            for o in outputs]
    counts = {k: keys.count(k) for k in keys if k is not None}
    if not counts:
        return 0
    best = max(counts.values())
    return next(i for i, k in enumerate(keys) if k is not None and counts[k] == best)


def run_check(node: NodeSpec, tools: ToolRegistry, inputs: dict[str, Any],
              outputs: dict[str, Any]) -> tuple[bool, ToolCallRecord]:
    """Call the node's checking tool on its inputs and outputs: passed (the result is true),
    and the call."""
    assert node.check is not None
    values = {**inputs, **outputs}
    call = tools.call(node.check.tool, {arg: values.get(field)
                                        for arg, field in node.check.args.items()})
    return call.ok and call.result is not None and call.result.strip().lower() == "true", call


def check_feedback(call: ToolCallRecord) -> str:
    why = call.result if call.ok else f"ERROR: {call.error}"
    return f"The check {call.tool} did not pass ({str(why)[:300]}). Answer again."
