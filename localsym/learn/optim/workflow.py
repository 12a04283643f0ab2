"""The workflow optimizer: the graph's edits (nodes, edges, a team's roles) written by an LLM.

Its structured output is a list of actions (the schemas below, each node name an enum of the
spec's nodes); each action becomes one typed edit (``localsym.learn.edits``), applied and
validated on its own: an invalid one is rejected with its reason, the valid ones stay."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, Field, ValidationError, create_model

from localsym.agent.node import NodeSpec, RoleSpec
from localsym.agent.spec import PipelineSpec
from localsym.agent.weights import FieldSpec, FieldType, PROMPT_FIELDS, PromptWeights
from localsym.learn.edits import (AddNode, AddRole, Edit, EditError, RemoveNode, RemoveRole,
                                  Rewire, SetController, SetPrompt)
from localsym.learn.optim.base import (Batch, LearningRate, Optimizer, Proposal, UpdateRecord,
                                       history)
from localsym.lm.base import LM, META_PARAMS, SamplingParams
from localsym.templates import render


class NewField(BaseModel):
    name: str = Field(pattern=r"^[a-z_][a-z0-9_]{0,30}$")
    type: FieldType = "str"
    description: str = ""


class NewNode(BaseModel):
    action: Literal["add_node"]
    name: str = Field(pattern=r"^[a-z_][a-z0-9_]{0,30}$")
    after: str
    task: str
    inputs: list[str] = Field(max_length=6)
    outputs: list[NewField] = Field(min_length=1, max_length=4)

    def to_edit(self) -> Edit:
        try:
            node = NodeSpec(name=self.name, prompt=PromptWeights(task=self.task),
                            inputs=tuple(self.inputs),
                            outputs=tuple(FieldSpec(**f.model_dump()) for f in self.outputs))
        except ValidationError as err:
            raise EditError(f"add node {self.name}: {err.errors()[0]['msg']}") from None
        return AddNode(after=self.after, node_spec=node)


class DropNode(BaseModel):
    action: Literal["remove_node"]
    name: str

    def to_edit(self) -> Edit:
        return RemoveNode(name=self.name)


class NodeText(BaseModel):
    action: Literal["edit_node"]
    name: str
    field: Literal[PROMPT_FIELDS]  # type: ignore[valid-type]
    new_text: str

    def to_edit(self) -> Edit:
        return SetPrompt(node=self.name, field=self.field, text=self.new_text.strip())


class Connection(BaseModel):
    action: Literal["rewire"]
    source: str
    target: str
    connect: bool = Field(description="true adds the connection, false removes it")

    def to_edit(self) -> Edit:
        return Rewire(source=self.source, target=self.target, connect=self.connect)


class NewRole(BaseModel):
    """Give a node with roles one more role, with the prompt the optimizer writes."""

    action: Literal["add_role"]
    node: str
    name: str = Field(pattern=r"^[a-z_][a-z0-9_]{0,30}$")
    description: str = Field(max_length=200)
    task: str = Field(max_length=600)
    writes: list[str] = Field([], max_length=4)

    def to_edit(self) -> Edit:
        return AddRole(node=self.node, role=RoleSpec(
            name=self.name, description=self.description, prompt=PromptWeights(task=self.task),
            writes=tuple(self.writes)))


class DropRole(BaseModel):
    action: Literal["remove_role"]
    node: str
    name: str

    def to_edit(self) -> Edit:
        return RemoveRole(node=self.node, role=self.name)


class ControllerChoice(BaseModel):
    """Change who speaks next in a node with roles, or its turn limit."""

    action: Literal["edit_controller"]
    node: str
    policy: Literal["order", "rule", "random", "model"]
    max_turns: int = Field(ge=1, le=32)

    def to_edit(self) -> Edit:
        return SetController(node=self.node, policy=self.policy, max_turns=self.max_turns)


class PipelineOptimizer(Optimizer):
    """Typed edits of the workflow: add, remove, edit nodes, rewire edges; a team's roles."""

    name = "pipeline"

    def __init__(self, lm: LM, rate: LearningRate = LearningRate(),
                 params: SamplingParams = META_PARAMS):
        self.lm, self.rate, self.params = lm, rate, params

    @staticmethod
    def schema(spec: PipelineSpec) -> type[BaseModel]:
        """WorkflowUpdate with every node name an enum of the spec's nodes and every input an
        enum of the fields that exist: the decoder cannot name what is not there."""
        nodes = Literal[tuple(n.name for n in spec.nodes)]
        fields = Literal[tuple(sorted(spec.producers()))]
        add = create_model("AddNodeAction", __base__=NewNode, after=(nodes, ...),
                           inputs=(list[fields], Field(max_length=6)))
        remove = create_model("RemoveNodeAction", __base__=DropNode, name=(nodes, ...))
        edit = create_model("EditNodeAction", __base__=NodeText, name=(nodes, ...))
        rewire = create_model("RewireAction", __base__=Connection, source=(nodes, ...),
                              target=(nodes, ...))
        kinds: tuple = (add, remove, edit, rewire)
        teams = tuple(n.name for n in spec.nodes if n.roles)
        if teams:  # role actions exist only where a node has roles (a plain spec's schema stays)
            team = Literal[teams]
            roles = Literal[tuple(sorted({r.name for n in spec.nodes for r in n.roles}))]
            kinds += (create_model("AddRoleAction", __base__=NewRole, node=(team, ...)),
                      create_model("RemoveRoleAction", __base__=DropRole, node=(team, ...),
                                   name=(roles, ...)),
                      create_model("EditControllerAction", __base__=ControllerChoice,
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
                        suggestions=suggestions, max_actions=self.rate.max_actions, fields=fields,
                        history=history(memory, self.name))
        update = self.lm.generate([{"role": "user", "content": prompt}], self.schema(spec),
                                  self.params)
        return self.apply(spec, update.actions, update.reasoning)

    def apply(self, spec: PipelineSpec, actions: list, reasoning: str = "") -> Proposal:
        """The actions as typed edits, at most ``max_actions`` of them, each applied on its own."""
        proposal = Proposal(spec=spec, reasoning=reasoning, rate=self.rate)
        for i, action in enumerate(actions):
            try:
                edit = action.to_edit()
            except EditError as err:
                proposal.rejected.append(err.cause)
                continue
            if i >= self.rate.max_actions:
                proposal.rejected.append(f"{edit.describe()}: over the {self.rate.max_actions}-"
                                         "action limit")
                continue
            proposal.add(edit)
        return proposal
