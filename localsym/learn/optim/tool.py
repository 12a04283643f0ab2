"""The tool optimizer: rewrites tool texts, chooses each node's tools, writes glue bindings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, create_model

from localsym.agent.chain import FLAT_OPS, from_flat
from localsym.agent.node import InputBinding, NodeSpec, ToolBinding
from localsym.agent.spec import PipelineSpec
from localsym.learn.edits import (AttachTool, BindOutput, DetachTool, Edit, SetToolText,
                                  WriteCall, attached)
from localsym.learn.optim.base import (Batch, LearningRate, Optimizer, Proposal, UpdateRecord,
                                       history)
from localsym.lm.base import LM, META_PARAMS, SamplingParams
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
        # the glue's strings are unbounded in the grammar: a counted bound on each (64, 80
        # characters) unrolled this schema's compiled index to 370 MB (1 GB of peak memory, 10 s
        # to compile); unbounded it is 6 MB. The call's token limit still ends a long one, and
        # the glue's own fields refuse what is too long (a rejected edit, with its reason).
        step = create_model("GlueStep", op=(Literal[tuple(FLAT_OPS)], ...), arg=(str, ""))
        binding = create_model(
            "GlueBinding", node=(Literal[nodes], ...), tool=(Literal[tools], ...),
            argument=(str, ""), input=(str, ""), output=(str, ""),
            steps=(list[step], Field([], max_length=4)))
        return create_model("ToolUpdate", reasoning=(str, ...),
                            edits=(list[text_edit], Field(max_length=4)),
                            selection=(list[selection], Field(max_length=4)),
                            bindings=(list[binding], Field([], max_length=2)))

    def step(self, spec: PipelineSpec, batch: Batch, memory: list[UpdateRecord]) -> Proposal:
        proposal = Proposal(spec=spec, rate=self.rate)
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
        self._texts(proposal, spec, update.edits)
        budget = self._selection(proposal, update.selection, self.rate.max_fields)
        self._bindings(proposal, getattr(update, "bindings", []), budget)
        return proposal

    def _texts(self, proposal: Proposal, spec: PipelineSpec, edits: list) -> None:
        """The tools' text edits, at most ``max_fields`` of them (``SetToolText``)."""
        budget = self.rate.max_fields
        for edit in edits:
            typed = SetToolText(tool=edit.tool, field=edit.field, text=edit.new_text.strip())
            old = getattr(spec.tool(edit.tool), edit.field)
            if typed.text == old:
                continue
            why = "over the edit limit" if budget <= 0 else \
                self.rate.text_edit(old, typed.text, set())
            if why:
                proposal.rejected.append(f"{typed.describe()}: {why}")
            elif proposal.add(typed):
                budget -= 1

    @staticmethod
    def _selection(proposal: Proposal, selections: list, budget: int) -> int:
        """Each node's tools added and removed (``AttachTool``, ``DetachTool``: one selection
        counts once against the budget); the budget left."""
        for sel in selections:
            old = proposal.spec.node(sel.node).tools
            edits: list[Edit] = [DetachTool(node=sel.node, tool=t) for t in old
                                 if t in sel.remove] + \
                [AttachTool(node=sel.node, tool=t) for t in dict.fromkeys(sel.add)
                 if t not in old]
            if not edits:
                continue
            if budget <= 0:
                proposal.rejected += [f"{e.describe()}: over the edit limit" for e in edits]
                continue
            if all([proposal.add(e) for e in edits]):
                budget -= 1
        return budget

    @staticmethod
    def _bindings(proposal: Proposal, bindings: list, budget: int) -> None:
        """The glue bindings written, as typed edits within the budget left."""
        for b in bindings:
            try:
                if budget <= 0:
                    raise ValueError("over the edit limit")
                edits = glue_binding(proposal.spec.node(b.node), b)
            except ValueError as err:
                proposal.rejected.append(f"{b.node}: binding of {b.tool}: {err}")
                continue
            if all([proposal.add(e) for e in edits]):
                budget -= 1


def glue_binding(node: NodeSpec, b: Any) -> list[Edit]:
    """The edits of a binding an optimizer wrote: a tool argument from an input, or an output
    from the tool's result, each through typed glue steps, the tool attached. A ValueError says
    why it cannot be."""
    via = tuple(from_flat(s.op, s.arg) for s in b.steps)
    edits: list[Edit] = attached(node, b.tool)
    try:
        if b.argument and b.input:
            wiring = {k.partition(".")[2]: v for k, v in node.arg_from.items()
                      if k.partition(".")[0] == b.tool}
            wiring[b.argument] = b.input if not via else InputBinding(input=b.input, via=via)
            return edits + [WriteCall(node=node.name, tool=b.tool, args=wiring)]
        if b.output:
            return edits + [BindOutput(node=node.name, output=b.output, binding=b.tool if not via
                                       else ToolBinding(tool=b.tool, via=via))]
    except ValidationError as err:
        raise ValueError(err.errors()[0]["msg"]) from None
    raise ValueError("a binding names an argument and an input, or an output")
