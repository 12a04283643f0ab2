"""A node with roles at run time: the roles take turns in one conversation, a controller picks
who speaks next and ends it; the seed's SOP state with several agents, as typed, trainable data.

``conversation`` is a generator of LM calls (the protocol of ``Pipeline._forward_steps``): each
model role's turn is one schema-forced call (``done``, the outputs it may write, a short
``message`` to the team), a checker role's turn runs its declared tool (no call), and with the
``model`` policy the controller's choice is one call more, under an enum of the roles. The node is
done when its finisher says so, or at the turn limit; its outputs are the latest written.
"""

from __future__ import annotations

import json
import zlib
from typing import Any, Literal

from pydantic import Field, create_model

from localsym.agent.node import NodeSpec, RoleSpec
from localsym.agent.schemas import PY_TYPES
from localsym.agent.spec import PipelineSpec
from localsym.agent.tools import ToolRegistry
from localsym.agent.trajectory import NodeRecord, Turn
from localsym.agent.weights import PROMPT_FIELDS
from localsym.errors import CallFailure
from localsym.seeds import Slot
from localsym.templates import render, render_text

MESSAGE_CHARS = 300  # a turn's message to the team
STOP = "stop"  # the model controller's word for "the node is done"
PASSED = ("true", "pass", "passed", "ok", "yes")  # a checker's tool result that is a pass


def turn_model(node: NodeSpec, role: RoleSpec):
    """The schema of a model role's turn: done first (a short choice), then the outputs it may
    write, then its message."""
    fields: dict[str, Any] = {"done": (bool, Field(description="true when the node's work is "
                                                   "finished"))}
    for f in node.outputs:
        if f.name in role.writes:
            fields[f.name] = (Literal[f.choices] if f.choices else PY_TYPES[f.type],
                              Field(description=f.description or None, pattern=f.pattern))
    fields["message"] = (str, Field(max_length=MESSAGE_CHARS, description="what you say to the "
                                    "team"))
    return create_model(f"{node.name}_{role.name}_turn", **fields)


def controller_model(node: NodeSpec):
    names = tuple(r.name for r in node.roles) + (STOP,)
    return create_model(f"{node.name}_next", next=(Literal[names], ...))


def role_messages(spec: PipelineSpec, node: NodeSpec, role: RoleSpec, inputs: dict,
                  turns: list[Turn]) -> list[dict[str, str]]:
    """What a role sees: its prompt pieces and the node's task in the system message; the
    inputs and the conversation so far in the user message."""
    weights = {f: render_text(getattr(role.prompt, f), **inputs) for f in PROMPT_FIELDS}
    system = render("role.j2", spec=spec, node=node, role=role, weights=weights,
                    node_task=render_text(node.prompt.task, **inputs),
                    outputs=[f for f in node.outputs if f.name in role.writes])
    user = render("role_turn.j2", inputs=inputs, turns=turns)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def conversation(pipeline, node: NodeSpec, inputs: dict, step: int, record: NodeRecord):
    """Run the roles of ``node`` on ``inputs``, filling ``record`` (turns, outputs, calls);
    yields each LM call and is sent its (value, completion)."""
    spec, ctrl, tools = pipeline.spec, node.team, pipeline.tools
    finisher = ctrl.finisher or node.roles[-1].name
    turns: list[Turn] = []
    written: dict[str, Any] = {}
    speaker: RoleSpec | None = None
    for t in range(ctrl.max_turns):
        speaker, how = yield from _next(pipeline, node, inputs, step, t, speaker, turns, record)
        if speaker is None:
            break
        if speaker.tool is not None:
            turn = _check(tools, speaker, {**inputs, **written}, how)
        else:
            messages = role_messages(spec, node, speaker, inputs, turns)
            record.calls += 1
            value, completion = yield (messages, turn_model(node, speaker),
                                       pipeline.sampling(node, Slot.turn(step, t)))
            record.count(completion)
            answer = value.model_dump()
            outputs = {k: answer[k] for k in speaker.writes if k in answer}
            turn = Turn(role=speaker.name, message=answer.get("message", ""), outputs=outputs,
                        done=bool(answer.get("done")), messages=messages, chosen_by=how)
            if ctrl.outputs_from in (None, speaker.name):
                written.update(outputs)
        turns.append(turn)
        if turn.done and speaker.name == finisher:
            break
    record.turns = turns
    missing = [f.name for f in node.outputs if f.name not in written]
    if missing:
        record.error = f"the roles never wrote {missing} in {len(turns)} turn(s)"
    record.outputs = written


def _next(pipeline, node: NodeSpec, inputs: dict, step: int, t: int, last: RoleSpec | None,
          turns: list[Turn], record: NodeRecord):
    """The role that speaks at turn ``t`` and how it was chosen (None: the node is done)."""
    roles, ctrl = node.roles, node.team
    by_name = {r.name: r for r in roles}
    if last is None and ctrl.policy != "model":
        return roles[0], "first"
    if ctrl.policy == "order":
        return roles[(roles.index(last) + 1) % len(roles)], "order"
    if ctrl.policy == "rule":
        nxt = ctrl.next.get(last.name)
        return (by_name[nxt], "rule") if nxt else (roles[(roles.index(last) + 1) % len(roles)],
                                                   "order")
    if ctrl.policy == "random":
        key = f"{json.dumps(inputs, sort_keys=True, default=str)}:{node.name}:{t}"
        return roles[zlib.crc32(key.encode()) % len(roles)], "random"
    messages = [{"role": "system", "content": render("controller.j2", spec=pipeline.spec,
                                                     node=node, stop=STOP)},
                {"role": "user", "content": render("role_turn.j2", inputs=inputs, turns=turns)}]
    record.calls += 1
    try:
        value, completion = yield (messages, controller_model(node),
                                   pipeline.sampling(node, Slot.controller(step, t)))
        record.count(completion)
    except CallFailure:
        return (roles[0] if last is None else None), "model (failed)"
    return (by_name.get(value.next), "model") if value.next != STOP else (None, "model")


def _check(tools: ToolRegistry, role: RoleSpec, values: dict, how: str) -> Turn:
    """A checker's turn: its tool on the draft; the result is its message, a pass is done."""
    call = tools.call(role.tool, {arg: values.get(field) for arg, field in role.args.items()})
    said = call.result if call.ok else f"ERROR: {call.error}"
    passed = call.ok and str(call.result).strip().lower() in PASSED
    return Turn(role=role.name, message=str(said)[:2000], done=passed, tool_call=call,
                chosen_by=how)
