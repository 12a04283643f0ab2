"""The workflow optimizer: typed edits of the graph (nodes, edges, a team's roles)."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, Field, create_model

from localsym.agent.spec import PipelineSpec
from localsym.errors import ConfigError
from localsym.learn.actions import (AddNode, AddRole, EditController, EditNode, RemoveNode,
                                    RemoveRole, Rewire, apply_action, describe_action)
from localsym.learn.loss import META_PARAMS
from localsym.learn.optim.base import (Batch, Change, LearningRate, Optimizer, Proposal,
                                       UpdateRecord, history)
from localsym.lm.base import LM, SamplingParams
from localsym.templates import render


class PipelineOptimizer(Optimizer):
    """Typed edits of the workflow: add, remove, edit nodes, rewire edges. Each action is applied
    and validated on its own; an invalid one is rejected with its reason, the valid ones stay."""

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
                        suggestions=suggestions, max_actions=self.rate.max_actions, fields=fields,
                        history=history(memory, self.name))
        update = self.lm.generate([{"role": "user", "content": prompt}], self.schema(spec),
                                  self.params)
        return self.apply(spec, update.actions, update.reasoning)

    def apply(self, spec: PipelineSpec, actions: list[BaseModel], reasoning: str = "") -> Proposal:
        proposal = Proposal(spec=spec, reasoning=reasoning)
        for i, action in enumerate(actions):
            what = describe_action(action)
            if i >= self.rate.max_actions:
                proposal.rejected.append(f"{what}: over the {self.rate.max_actions}-action limit")
                continue
            try:
                new = apply_action(proposal.spec, action)
            except ConfigError as err:
                proposal.rejected.append(f"{what}: {err.cause}")
                continue
            proposal.changes.append(Change(target=f"workflow: {what}",
                                           before=_graph(proposal.spec), after=_graph(new)))
            proposal.spec = new
        return proposal


def _graph(spec: PipelineSpec) -> dict:
    return {"nodes": [n.name for n in spec.nodes],
            "edges": [[e.source, e.target] for e in spec.effective_edges()]}
