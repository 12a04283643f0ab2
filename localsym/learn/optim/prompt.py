"""The prompt optimizer: rewrites the named prompt fields of each node (or role) with gradients."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Literal

from pydantic import BaseModel, Field

from localsym.agent.spec import PipelineSpec
from localsym.agent.weights import PROMPT_FIELDS, PromptWeights, node_param
from localsym.learn.actions import check_text_edit
from localsym.learn.loss import META_PARAMS
from localsym.learn.optim.base import (Batch, Change, LearningRate, Optimizer, Proposal,
                                       UpdateRecord, history)
from localsym.lm.base import LM, SamplingParams
from localsym.templates import render


class PromptEdit(BaseModel):
    field: Literal[PROMPT_FIELDS]
    new_text: str


class PromptUpdate(BaseModel):
    reasoning: str
    edits: list[PromptEdit] = Field(max_length=len(PROMPT_FIELDS))


class PromptOptimizer(Optimizer):
    """Rewrites named prompt fields of every node that has gradients."""

    name = "prompt"

    def __init__(self, lm: LM, rate: LearningRate = LearningRate(),
                 params: SamplingParams = META_PARAMS):
        self.lm, self.rate, self.params = lm, rate, params

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
                        max_fields=self.rate.max_fields, history=history(memory, self.name, about),
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
            if len(touched) >= self.rate.max_fields:
                proposal.rejected.append(f"{target}: over the {self.rate.max_fields}-field limit")
                continue
            why = check_text_edit(old, new, self.rate.max_change, set(node.inputs))
            if why:
                proposal.rejected.append(f"{target}: {why}")
                continue
            fields[edit.field] = new
            touched.add(edit.field)
            proposal.changes.append(Change(target=target, before=old, after=new))
        return fields if touched else None
