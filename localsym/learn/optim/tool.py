"""The tool optimizer: rewrites tool texts, chooses each node's tools, writes glue bindings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, create_model

from localsym.agent.chain import FLAT_OPS, from_flat
from localsym.agent.node import InputBinding, NodeSpec, ToolBinding
from localsym.agent.spec import PipelineSpec
from localsym.agent.weights import node_param, tool_param
from localsym.learn.actions import check_text_edit
from localsym.learn.loss import META_PARAMS
from localsym.learn.optim.base import (Batch, Change, LearningRate, Optimizer, Proposal,
                                       UpdateRecord, history)
from localsym.lm.base import LM, SamplingParams
from localsym.templates import render


class ToolOptimizer(Optimizer):
    """Rewrites tool descriptions and usage notes, and which tools each node may use. Two budgets
    of ``max_fields`` edits each: text edits never starve the choice of tools (attaching a tool is
    one selection edit, whatever the text edits did); bindings share the selection's."""

    name = "tool"

    def __init__(self, lm: LM, rate: LearningRate = LearningRate(),
                 params: SamplingParams = META_PARAMS):
        self.lm, self.rate, self.params = lm, rate, params

    def schema(self, spec: PipelineSpec) -> type[BaseModel]:
        tools = tuple(t.name for t in spec.tools)
        nodes = tuple(n.name for n in spec.nodes)
        text_edit = create_model("ToolTextEdit", tool=(Literal[tools], ...),
                                 field=(Literal["description", "usage_notes"], ...),
                                 new_text=(str, ...))
        selection = create_model("ToolSelection", node=(Literal[nodes], ...),
                                 add=(list[Literal[tools]], []), remove=(list[Literal[tools]], []))
        step = create_model("GlueStep", op=(Literal[tuple(FLAT_OPS)], ...),
                            arg=(str, Field("", max_length=80)))
        binding = create_model(
            "GlueBinding", node=(Literal[nodes], ...), tool=(Literal[tools], ...),
            argument=(str, Field("", max_length=64)), input=(str, Field("", max_length=64)),
            output=(str, Field("", max_length=64)), steps=(list[step], Field([], max_length=4)))
        return create_model("ToolUpdate", reasoning=(str, ...),
                            edits=(list[text_edit], Field(max_length=4)),
                            selection=(list[selection], Field(max_length=4)),
                            bindings=(list[binding], Field([], max_length=2)))

    def step(self, spec: PipelineSpec, batch: Batch, memory: list[UpdateRecord]) -> Proposal:
        proposal = Proposal(spec=spec)
        if not spec.tools:
            return proposal
        nodes_now = {n.name for n in spec.nodes}  # an earlier edit may have removed a node
        feedback = [{"node": g.node, "text": g.tool_feedback or g.analysis}
                    for eg in batch.gradients for g in eg.nodes if g.node in nodes_now][:10]
        calls = [f"{r.node} called {c.tool}({c.args}) -> "
                 f"{c.result if c.ok else 'ERROR ' + str(c.error)}"[:300]
                 for t in batch.trajectories for r in t.records for c in r.tool_calls][:12]
        prompt = render("optimize_tools.j2", task=spec.description, spec=spec,
                        tool_feedback=feedback, calls=calls, max_edits=self.rate.max_fields,
                        history=history(memory, self.name))
        update = self.lm.generate([{"role": "user", "content": prompt}], self.schema(spec),
                                  self.params)
        proposal.reasoning = update.reasoning
        tools = self._texts(proposal, spec, update.edits)
        nodes = {n.name: n for n in spec.nodes}
        budget = self._selection(proposal, nodes, update.selection, self.rate.max_fields)
        self._bindings(proposal, nodes, getattr(update, "bindings", []), budget)
        if proposal.changes:
            proposal.spec = PipelineSpec.model_validate({
                **spec.model_dump(), "tools": [t.model_dump() for t in tools.values()],
                "nodes": [n.model_dump() for n in nodes.values()]})
        return proposal

    def _texts(self, proposal: Proposal, spec: PipelineSpec, edits: list) -> dict:
        """The tools with the text edits applied, at most ``max_fields`` of them."""
        budget = self.rate.max_fields
        tools = {t.name: t for t in spec.tools}
        for edit in edits:
            target = tool_param(edit.tool, edit.field)
            old, new = getattr(tools[edit.tool], edit.field), edit.new_text.strip()
            if new == old:
                continue
            why = "over the edit limit" if budget <= 0 else \
                check_text_edit(old, new, self.rate.max_change, set())
            if why:
                proposal.rejected.append(f"{target}: {why}")
                continue
            tools[edit.tool] = tools[edit.tool].model_copy(update={edit.field: new})
            proposal.changes.append(Change(target=target, before=old, after=new))
            budget -= 1
        return tools

    @staticmethod
    def _selection(proposal: Proposal, nodes: dict, selections: list, budget: int) -> int:
        """Each node's tools added and removed in ``nodes``; the budget left."""
        for sel in selections:
            old = nodes[sel.node].tools
            new = tuple(t for t in old if t not in sel.remove) + \
                tuple(dict.fromkeys(t for t in sel.add if t not in old))
            if new == old:
                continue
            if budget <= 0:
                proposal.rejected.append(f"{node_param(sel.node, 'tools')}: over the edit limit")
                continue
            node = nodes[sel.node]
            nodes[sel.node] = node.model_copy(update={
                "tools": new, "bind": {k: v for k, v in node.bind.items()
                                       if node.bound_tool(k) in new},
                "arg_from": node.arg_from if node.call_tool in new else {}})
            proposal.changes.append(Change(target=node_param(sel.node, "tools"), before=list(old),
                                           after=list(new)))
            budget -= 1
        return budget

    @staticmethod
    def _bindings(proposal: Proposal, nodes: dict, bindings: list, budget: int) -> None:
        """The glue bindings written, applied to ``nodes`` within the budget left."""
        for b in bindings:
            target = node_param(b.node, "bindings")
            try:
                if budget <= 0:
                    raise ValueError("over the edit limit")
                node, what = glue_binding(nodes[b.node], b)
            except ValueError as err:
                proposal.rejected.append(f"{target}: {err}")
                continue
            nodes[b.node] = node
            proposal.changes.append(Change(target=f"{target}: {what}"))
            budget -= 1


def glue_binding(node: NodeSpec, b: Any) -> tuple[NodeSpec, str]:
    """``node`` with the binding an optimizer wrote (a tool argument from an input, or an output
    from the tool's result, each through typed glue steps), the tool attached; and the edit in
    words. A ValueError says why it cannot be."""
    via = tuple(from_flat(s.op, s.arg) for s in b.steps)
    steps = "".join(f" | {op.describe()}" for op in via)
    tools = node.tools + ((b.tool,) if b.tool not in node.tools else ())
    if b.argument and b.input:
        key = f"{b.tool}.{b.argument}"
        wiring = {k: v for k, v in node.arg_from.items() if k.partition(".")[0] == b.tool}
        wiring[key] = b.input if not via else InputBinding(input=b.input, via=via)
        update: dict[str, Any] = {"tools": tools, "arg_from": wiring}
        what = f"call {b.tool} first with {b.argument} = {b.input}{steps}"
    elif b.output:
        update = {"tools": tools, "bind": {**node.bind, b.output: b.tool if not via else
                                           ToolBinding(tool=b.tool, via=via)}}
        what = f"bind {node.name}.{b.output} to {b.tool}{steps}"
    else:
        raise ValueError("a binding names an argument and an input, or an output")
    try:
        return NodeSpec.model_validate({**node.model_dump(), **update}), what
    except ValidationError as err:
        raise ValueError(err.errors()[0]["msg"]) from None
