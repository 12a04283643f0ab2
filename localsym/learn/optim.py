"""Optimizers: LLMs (and one bootstrap learner) that turn gradients into a new agent spec.

Each optimizer's ``step(spec, batch)`` takes the gradients of a whole batch, aggregated per node,
and returns a ``Proposal``: the new spec (validated by the same pydantic schema as any spec), the
changes made, and the edits rejected with their reason. Specs are immutable, so the old spec is an
exact copy to roll back to. The "learning rate" is enforced here, in code: how many fields or
actions one step may touch, and how much of a text one edit may change. The optimizer sees its
earlier updates and whether they were accepted (``memory``), so it does not repeat a rejected edit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import SimpleNamespace
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, ValidationError, create_model

from localsym.agent.glue import FLAT_OPS, from_flat
from localsym.agent.spec import (PROMPT_FIELDS, InputBinding, NodeSpec, PipelineSpec,
                                 PromptWeights, ToolBinding, node_param, tool_param)
from localsym.agent.trajectory import Trajectory
from localsym.errors import ConfigError
from localsym.learn.actions import (AddNode, AddRole, EditController, EditNode, RemoveNode,
                                    RemoveRole, Rewire, apply_action, check_text_edit,
                                    describe_action)
from localsym.learn.backward import ExampleGradients, NodeGradient
from localsym.learn.edits import demonstration_of
from localsym.learn.loss import META_PARAMS
from localsym.lm.base import LM, SamplingParams
from localsym.templates import render

# Where a step's candidates come from, by the names a config uses (``train.optimizers``): the LLM
# optimizers below (``name`` of each class), written from the gradients, and the sources code
# lists without a model (learn/edits.py).
OptimizerName = Literal["prompt", "tool", "pipeline", "demonstrations", "structure", "merge"]
LLM_OPTIMIZERS: tuple[OptimizerName, ...] = ("prompt", "tool", "pipeline")
LISTED_SOURCES: tuple[OptimizerName, ...] = ("demonstrations", "structure", "merge")


class Change(BaseModel):
    target: str  # a parameter name, e.g. nodes.solve.prompt.task, or workflow
    before: Any = None
    after: Any = None


class Proposal(BaseModel):
    spec: PipelineSpec
    changes: list[Change] = []
    rejected: list[str] = []
    reasoning: str = ""


class Batch(BaseModel):
    """What one training step learned from: the trajectories, their losses and gradients."""

    trajectories: list[Trajectory]
    gradients: list[ExampleGradients]

    def node_gradients(self, node: str) -> list[NodeGradient]:
        return [g for eg in self.gradients for g in eg.nodes if g.node == node]


class UpdateRecord(BaseModel):
    """Optimizer memory: one earlier update and its fate."""

    step: int
    optimizer: str
    changes: list[str]
    accepted: bool
    val_before: float
    val_after: float

    def line(self) -> str:
        verdict = "accepted" if self.accepted else "REJECTED"
        return (f"step {self.step}: {'; '.join(self.changes)[:300]} -> validation "
                f"{self.val_before:.2f} to {self.val_after:.2f}, {verdict}")


class Optimizer(ABC):
    name: str

    @abstractmethod
    def step(self, spec: PipelineSpec, batch: Batch, memory: list[UpdateRecord]) -> Proposal:
        ...


def _history(memory: list[UpdateRecord], optimizer: str, about: str = "") -> list[str]:
    return [m.line() for m in memory if m.optimizer == optimizer and about in " ".join(m.changes)][-6:]


# -- prompts ---------------------------------------------------------------------------------------
class PromptEdit(BaseModel):
    field: Literal[PROMPT_FIELDS]
    new_text: str


class PromptUpdate(BaseModel):
    reasoning: str
    edits: list[PromptEdit] = Field(max_length=len(PROMPT_FIELDS))


class PromptOptimizer(Optimizer):
    """Rewrites named prompt fields of every node that has gradients."""

    name = "prompt"

    def __init__(self, lm: LM, max_fields: int = 2, max_change: float = 0.8,
                 params: SamplingParams | None = None):
        self.lm, self.max_fields, self.max_change = lm, max_fields, max_change
        self.params = params or META_PARAMS

    def step(self, spec: PipelineSpec, batch: Batch, memory: list[UpdateRecord]) -> Proposal:
        """One rewrite of every node's prompt that has gradients; for a node with roles, one of
        every role's (its gradients aggregated by role)."""
        proposal = Proposal(spec=spec)
        for node in spec.nodes:
            grads = batch.node_gradients(node.name)
            if not grads:
                continue
            if not node.roles:
                fields = self._rewrite(proposal, spec, node, node, grads, memory,
                                       node_param(node.name, "prompt"), node_param(node.name))
                if fields is not None:
                    node = node.model_copy(update={"prompt": PromptWeights(**fields)})
                    proposal.spec = proposal.spec.replace(node)
                continue
            roles = list(node.roles)
            for k, role in enumerate(roles):
                mine = [g for g in grads if g.role == role.name]
                if role.tool is not None or not mine:
                    continue
                view = SimpleNamespace(name=f"{node.name} (team member {role.name})",
                                       inputs=node.inputs, prompt=role.prompt,
                                       outputs=[f for f in node.outputs if f.name in role.writes])
                fields = self._rewrite(proposal, spec, node, view, mine, memory,
                                       node_param(node.name, "roles", role.name, "prompt"),
                                       node_param(node.name, "roles", role.name))
                if fields is not None:
                    roles[k] = role.model_copy(update={"prompt": PromptWeights(**fields)})
            if tuple(roles) != node.roles:
                proposal.spec = proposal.spec.replace(node.model_copy(
                    update={"roles": tuple(roles)}))
        return proposal

    def _rewrite(self, proposal: Proposal, spec: PipelineSpec, node, holder, grads: list,
                 memory: list[UpdateRecord], prefix: str, about: str) -> dict | None:
        """The new prompt fields of ``holder`` (a node, or a role seen as one) from its
        gradients, the learning rate enforced (changes and rejections go into ``proposal``);
        None when nothing changed."""
        prompt = render("optimize_prompt.j2", task=spec.description, node=holder,
                        prompt_fields=PROMPT_FIELDS, gradients=grads[:8],
                        max_fields=self.max_fields, history=_history(memory, self.name, about),
                        variables=list(node.inputs))
        update = self.lm.generate([{"role": "user", "content": prompt}], PromptUpdate, self.params)
        proposal.reasoning += f"[{holder.name}] {update.reasoning}\n"
        fields = dict(holder.prompt.model_dump())
        touched: set[str] = set()
        for edit in update.edits:
            target = f"{prefix}.{edit.field}"
            old, new = fields[edit.field], edit.new_text.strip()
            if new == old:
                continue
            if edit.field in touched:
                proposal.rejected.append(f"{target}: a second edit of the same field")
                continue
            if len(touched) >= self.max_fields:
                proposal.rejected.append(f"{target}: over the {self.max_fields}-field limit")
                continue
            why = check_text_edit(old, new, self.max_change, set(node.inputs))
            if why:
                proposal.rejected.append(f"{target}: {why}")
                continue
            fields[edit.field] = new
            touched.add(edit.field)
            proposal.changes.append(Change(target=target, before=old, after=new))
        return fields if touched else None


# -- tools -----------------------------------------------------------------------------------------
class ToolOptimizer(Optimizer):
    """Rewrites tool descriptions and usage notes, and which tools each node may use."""

    name = "tool"

    def __init__(self, lm: LM, max_edits: int = 2, max_change: float = 0.8,
                 params: SamplingParams | None = None):
        self.lm, self.max_edits, self.max_change = lm, max_edits, max_change
        self.params = params or META_PARAMS

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
                        tool_feedback=feedback, calls=calls, max_edits=self.max_edits,
                        history=_history(memory, self.name))
        update = self.lm.generate([{"role": "user", "content": prompt}], self.schema(spec),
                                  self.params)
        proposal.reasoning = update.reasoning
        # two budgets: text edits never starve the choice of tools (attaching a tool is one
        # selection edit, whatever the text edits did)
        budget = self.max_edits
        tools = {t.name: t for t in spec.tools}
        for edit in update.edits:
            target = tool_param(edit.tool, edit.field)
            old, new = getattr(tools[edit.tool], edit.field), edit.new_text.strip()
            if new == old:
                continue
            why = "over the edit limit" if budget <= 0 else \
                check_text_edit(old, new, self.max_change, set())
            if why:
                proposal.rejected.append(f"{target}: {why}")
                continue
            tools[edit.tool] = tools[edit.tool].model_copy(update={edit.field: new})
            proposal.changes.append(Change(target=target, before=old, after=new))
            budget -= 1
        nodes = {n.name: n for n in spec.nodes}
        budget = self.max_edits
        for sel in update.selection:
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
        for b in getattr(update, "bindings", []):
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
        if proposal.changes:
            proposal.spec = PipelineSpec.model_validate({
                **spec.model_dump(), "tools": [t.model_dump() for t in tools.values()],
                "nodes": [n.model_dump() for n in nodes.values()]})
        return proposal


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


# -- the workflow ----------------------------------------------------------------------------------
class PipelineOptimizer(Optimizer):
    """Typed edits of the workflow: add, remove, edit nodes, rewire edges. Each action is applied
    and validated on its own; an invalid one is rejected with its reason, the valid ones stay."""

    name = "pipeline"

    def __init__(self, lm: LM, max_actions: int = 1, params: SamplingParams | None = None):
        self.lm, self.max_actions = lm, max_actions
        self.params = params or META_PARAMS

    @staticmethod
    def schema(spec: PipelineSpec) -> type[BaseModel]:
        """WorkflowUpdate with every node name an enum of the spec's nodes and every input an
        enum of the fields that exist: the decoder cannot name what is not there."""
        nodes = Literal[tuple(n.name for n in spec.nodes)]
        fields = Literal[tuple(sorted(spec.producers()))]
        add = create_model("AddNodeAction", __base__=AddNode, after=(nodes, ...),
                           inputs=(list[fields], Field(max_length=6)))
        remove = create_model("RemoveNodeAction", __base__=RemoveNode, name=(nodes, ...))
        edit = create_model("EditNodeAction", __base__=EditNode, name=(nodes, ...))
        rewire = create_model("RewireAction", __base__=Rewire, source=(nodes, ...),
                              target=(nodes, ...))
        kinds: tuple = (add, remove, edit, rewire)
        teams = tuple(n.name for n in spec.nodes if n.roles)
        if teams:  # role actions exist only where a node has roles (a plain spec's schema stays)
            team = Literal[teams]
            roles = Literal[tuple(sorted({r.name for n in spec.nodes for r in n.roles}))]
            kinds += (create_model("AddRoleAction", __base__=AddRole, node=(team, ...)),
                      create_model("RemoveRoleAction", __base__=RemoveRole, node=(team, ...),
                                   name=(roles, ...)),
                      create_model("EditControllerAction", __base__=EditController,
                                   node=(team, ...)))
        action = Annotated[Union[kinds], Field(discriminator="action")]
        return create_model("WorkflowUpdate", reasoning=(str, ...),
                            actions=(list[action], Field(max_length=3)))

    def step(self, spec: PipelineSpec, batch: Batch, memory: list[UpdateRecord]) -> Proposal:
        suggestions = [eg.workflow.suggestion for eg in batch.gradients if eg.workflow][:8]
        if not suggestions:
            return Proposal(spec=spec)
        fields = sorted(spec.producers())
        prompt = render("optimize_workflow.j2", task=spec.description, spec=spec,
                        suggestions=suggestions, max_actions=self.max_actions, fields=fields,
                        history=_history(memory, self.name))
        update = self.lm.generate([{"role": "user", "content": prompt}], self.schema(spec),
                                  self.params)
        return self.apply(spec, update.actions, update.reasoning)

    def apply(self, spec: PipelineSpec, actions: list[BaseModel], reasoning: str = "") -> Proposal:
        proposal = Proposal(spec=spec, reasoning=reasoning)
        for i, action in enumerate(actions):
            what = describe_action(action)
            if i >= self.max_actions:
                proposal.rejected.append(f"{what}: over the {self.max_actions}-action limit")
                continue
            try:
                new = apply_action(proposal.spec, action)
            except ConfigError as err:
                proposal.rejected.append(f"{what}: {err.cause}")
                continue
            proposal.changes.append(Change(target="workflow", before=_graph(proposal.spec),
                                           after=_graph(new)))
            proposal.changes[-1] = proposal.changes[-1].model_copy(update={"target": f"workflow: {what}"})
            proposal.spec = new
        return proposal


def _graph(spec: PipelineSpec) -> dict:
    return {"nodes": [n.name for n in spec.nodes],
            "edges": [[e.source, e.target] for e in spec.effective_edges()]}


# -- demonstrations (bootstrap) --------------------------------------------------------------------
class DemonstrationOptimizer(Optimizer):
    """Adds the inputs and outputs of successful trajectories to each node's demonstrations (what
    DSPy's bootstrap does), at most ``per_step`` per node per step and ``max_demos`` in all."""

    name = "demonstrations"

    def __init__(self, min_score: float = 1.0, max_demos: int = 3, per_step: int = 1):
        self.min_score, self.max_demos, self.per_step = min_score, max_demos, per_step

    def step(self, spec: PipelineSpec, batch: Batch, memory: list[UpdateRecord]) -> Proposal:
        proposal = Proposal(spec=spec)
        added: dict[str, int] = {}
        for traj, grads in zip(batch.trajectories, batch.gradients):
            if not traj.ok or grads.loss.score < self.min_score:
                continue
            for record in traj.records:
                try:
                    node = proposal.spec.node(record.node)
                except KeyError:
                    continue
                demo = demonstration_of(record)  # tool turns included, as the node answers
                if demo in node.demonstrations or added.get(node.name, 0) >= self.per_step:
                    continue
                demos = (node.demonstrations + (demo,))[-self.max_demos:]
                proposal.spec = proposal.spec.replace(
                    node.model_copy(update={"demonstrations": demos}))
                added[node.name] = added.get(node.name, 0) + 1
                proposal.changes.append(Change(target=node_param(node.name, "demonstrations"),
                                               after=demo.model_dump()))
        return proposal


assert (PromptOptimizer.name, ToolOptimizer.name, PipelineOptimizer.name) == LLM_OPTIMIZERS
