"""The prompt optimizer: rewrites the named prompt fields of each node (or role) with gradients."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Literal

from pydantic import BaseModel, Field

from localsym.agent.spec import PipelineSpec
from localsym.agent.weights import PROMPT_FIELDS, node_param
from localsym.learn.edits import SetPrompt
from localsym.learn.optim.base import (Batch, LearningRate, Optimizer, Proposal, UpdateRecord,
                                       history)
from localsym.lm.base import LM, META_PARAMS, SamplingParams
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
        every role's (its gradients aggregated by role): ``SetPrompt`` edits."""
        proposal = Proposal(spec=spec, rate=self.rate)
        for node in spec.nodes:
            grads = batch.node_gradients(node.name)
            if not grads:
                continue
            if not node.roles:
                self._rewrite(proposal, spec, node, node, None, grads, memory)
                continue
            for role in node.roles:
                mine = [g for g in grads if g.role == role.name]
                if role.tool is not None or not mine:
                    continue
                view = SimpleNamespace(name=f"{node.name} (team member {role.name})",
                                       inputs=node.inputs, prompt=role.prompt,
                                       outputs=[f for f in node.outputs if f.name in role.writes])
                self._rewrite(proposal, spec, node, view, role.name, mine, memory)
        return proposal

    def _rewrite(self, proposal: Proposal, spec: PipelineSpec, node, holder, role: str | None,
                 grads: list, memory: list[UpdateRecord]) -> None:
        """The prompt fields of ``holder`` (a node, or a role seen as one) rewritten from its
        gradients, the learning rate enforced: each accepted rewrite one ``SetPrompt`` edit in
        ``proposal``, each refused one a line in its ``rejected``."""
        about = node_param(node.name) if role is None else node_param(node.name, "roles", role)
        prompt = render("optimize_prompt.j2", task=spec.description, node=holder,
                        prompt_fields=PROMPT_FIELDS, gradients=grads[:8],
                        max_fields=self.rate.max_fields, history=history(memory, self.name, about),
                        variables=list(node.inputs))
        update = self.lm.generate([{"role": "user", "content": prompt}], PromptUpdate, self.params)
        proposal.reasoning += f"[{holder.name}] {update.reasoning}\n"
        touched: set[str] = set()
        for edit in update.edits:
            new = edit.new_text.strip()
            typed = SetPrompt(node=node.name, field=edit.field, text=new, role=role)
            old = getattr(holder.prompt, edit.field)
            if new == old:
                continue
            why = "a second edit of the same field" if edit.field in touched else \
                f"over the {self.rate.max_fields}-field limit" \
                if len(touched) >= self.rate.max_fields else \
                self.rate.text_edit(old, new, set(node.inputs))
            if why:
                proposal.rejected.append(f"{typed.describe()}: {why}")
            elif proposal.add(typed):
                touched.add(edit.field)
