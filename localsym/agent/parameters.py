"""The trainable symbolic weights of an agent by name, PyTorch-style: every prompt piece of
every node and role, each node's demonstrations and tool selection, a team's controller, the
declared tools' texts, and the workflow itself (``Pipeline.parameters()``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from localsym.agent.spec import PipelineSpec
from localsym.agent.weights import PROMPT_FIELDS, node_param, tool_param


@dataclass(frozen=True)
class Parameter:
    """A trainable symbolic weight: where it is, what kind, its current value."""

    name: str
    kind: Literal["prompt", "demonstrations", "tool", "tool_selection", "workflow"]
    value: Any


def parameters(spec: PipelineSpec) -> list[Parameter]:
    """Every trainable weight of ``spec``, named as the optimizers and the report name it."""
    out = []
    for n in spec.nodes:
        for f in PROMPT_FIELDS:
            out.append(Parameter(node_param(n.name, "prompt", f), "prompt",
                                 getattr(n.prompt, f)))
        out.append(Parameter(node_param(n.name, "demonstrations"), "demonstrations",
                             n.demonstrations))
        if n.tools or spec.tools:
            out.append(Parameter(node_param(n.name, "tools"), "tool_selection", n.tools))
        for r in n.roles:  # each role's prompt pieces, and the controller, are weights
            out += [Parameter(node_param(n.name, "roles", r.name, "prompt", f), "prompt",
                              getattr(r.prompt, f)) for f in PROMPT_FIELDS]
        if n.roles:
            out.append(Parameter(node_param(n.name, "controller"), "workflow",
                                 n.team.model_dump()))
    for t in spec.tools:
        out.append(Parameter(tool_param(t.name, "description"), "tool", t.description))
        out.append(Parameter(tool_param(t.name, "usage_notes"), "tool", t.usage_notes))
    edges = [(e.source, e.target) for e in spec.effective_edges()]
    out.append(Parameter("workflow", "workflow",
                         {"nodes": [n.name for n in spec.nodes], "edges": edges}))
    return out
