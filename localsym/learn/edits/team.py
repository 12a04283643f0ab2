"""Edits of a node's roles: grow a plain node into a team, add or remove a role, set the
controller (who speaks next, how many turns). The other roles keep their weights."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from localsym.agent.node import Controller, RoleSpec
from localsym.agent.spec import PipelineSpec
from localsym.agent.weights import PromptWeights
from localsym.learn.edits.base import Edit, EditError, find_node, on_node


class GrowTeam(Edit):
    """A plain node becomes several roles taking turns under a controller; the node keeps only
    its task text (each role has its own prompt pieces) and drops its demonstrations."""

    kind: Literal["grow_team"] = "grow_team"
    node: str
    roles: tuple[RoleSpec, ...] = Field(min_length=2)
    controller: Controller

    def apply(self, spec: PipelineSpec) -> PipelineSpec:
        return on_node(spec, self, lambda n: {
            "prompt": PromptWeights(task=n.prompt.task), "demonstrations": (),
            "roles": self.roles, "controller": self.controller})

    def describe(self) -> str:
        return f"{self.node}: grow into {' and '.join(r.name for r in self.roles)} (up to " \
               f"{self.controller.max_turns} turns)"


class AddRole(Edit):
    """One more role in a node that has roles."""

    kind: Literal["add_role"] = "add_role"
    node: str
    role: RoleSpec

    def apply(self, spec: PipelineSpec) -> PipelineSpec:
        _team(spec, self)
        return on_node(spec, self, lambda n: {"roles": n.roles + (self.role,)})

    def describe(self) -> str:
        return f"add role {self.role.name} to {self.node}"


class RemoveRole(Edit):
    """A role taken out of a node; a controller that named it as finisher or as the one whose
    outputs count forgets it (the last role finishes, the latest outputs count)."""

    kind: Literal["remove_role"] = "remove_role"
    node: str
    role: str

    def apply(self, spec: PipelineSpec) -> PipelineSpec:
        node = _team(spec, self)
        if self.role not in {r.name for r in node.roles}:
            raise EditError(f"{self.describe()}: node {self.node!r} has no role {self.role!r}")
        ctrl = node.team
        kept = {k: (None if getattr(ctrl, k) == self.role else getattr(ctrl, k))
                for k in ("finisher", "outputs_from")}
        nxt = {a: b for a, b in ctrl.next.items() if self.role not in (a, b)}
        return on_node(spec, self, lambda n: {
            "roles": tuple(r for r in n.roles if r.name != self.role),
            "controller": ctrl.model_copy(update={**kept, "next": nxt})})

    def describe(self) -> str:
        return f"{self.node}: remove role {self.role}"


class SetController(Edit):
    """A team's controller policy or turn limit (None: as it is)."""

    kind: Literal["controller"] = "controller"
    node: str
    policy: Literal["order", "rule", "random", "model"] | None = None
    max_turns: int | None = Field(None, ge=1, le=32)

    def apply(self, spec: PipelineSpec) -> PipelineSpec:
        ctrl = _team(spec, self).team
        update = {k: v for k, v in (("policy", self.policy), ("max_turns", self.max_turns))
                  if v is not None}
        return on_node(spec, self, lambda n: {"controller": ctrl.model_copy(update=update)})

    def describe(self) -> str:
        parts = ([f"controller policy {self.policy}"] if self.policy else []) + \
            ([f"turn limit {self.max_turns}"] if self.max_turns else [])
        return f"{self.node}: {', '.join(parts) or 'controller unchanged'}"


def _team(spec: PipelineSpec, edit: Edit):
    node = find_node(spec, edit.node, edit.describe())  # type: ignore[attr-defined]
    if not node.roles:
        raise EditError(f"{edit.describe()}: node {node.name!r} has no roles")
    return node
