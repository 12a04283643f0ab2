"""Edits of one node's weights: a prompt piece (the node's or a role's), its demonstrations, a
pattern on an output, and test-time compute (a reasoning draft, a vote, a check)."""

from __future__ import annotations

from typing import Literal

from localsym.agent.node import Check, NodeSpec, Vote
from localsym.agent.spec import PipelineSpec
from localsym.agent.weights import PROMPT_FIELDS, Demonstration, node_param
from localsym.learn.edits.base import Edit, EditError, bounded_text, find_node, on_node
from localsym.templates import variables_of


class SetPrompt(Edit):
    """One prompt piece of a node (or of one of its roles), rewritten. The text may use only the
    node's inputs as variables, and keeps every variable the old text used."""

    kind: Literal["prompt"] = "prompt"
    node: str
    field: Literal[PROMPT_FIELDS]  # type: ignore[valid-type]
    text: str
    role: str | None = None

    def apply(self, spec: PipelineSpec) -> PipelineSpec:
        bounded_text(self, self.text)
        node = find_node(spec, self.node, self.describe())
        old = self.old_text(node)
        dropped = variables_of(old) - variables_of(self.text)
        unknown = variables_of(self.text) - set(node.inputs)
        if dropped or unknown:
            raise EditError(f"{self.describe()}: " + (
                f"drops the input variable(s) {sorted(dropped)}" if dropped else
                f"uses unknown variable(s) {sorted(unknown)}"))
        if self.role is None:
            return on_node(spec, self, lambda n: {"prompt": n.prompt.model_copy(
                update={self.field: self.text})})
        return on_node(spec, self, lambda n: {"roles": tuple(
            r.model_copy(update={"prompt": r.prompt.model_copy(update={self.field: self.text})})
            if r.name == self.role else r for r in n.roles)})

    def old_text(self, node: NodeSpec) -> str:
        """The text this edit replaces (an EditError when the role is not the node's)."""
        if self.role is None:
            return getattr(node.prompt, self.field)
        role = next((r for r in node.roles if r.name == self.role), None)
        if role is None:
            raise EditError(f"{self.describe()}: node {node.name!r} has no role {self.role!r}")
        return getattr(role.prompt, self.field)

    def describe(self) -> str:
        where = ("prompt",) if self.role is None else ("roles", self.role, "prompt")
        return node_param(self.node, *where, self.field)


class SetDemonstrations(Edit):
    """A node's demonstrations: written from labels, bootstrapped from runs that scored full
    marks (``ids``: the examples they came from, where known), or written by an optimizer."""

    kind: Literal["demonstrations"] = "demonstrations"
    node: str
    demonstrations: tuple[Demonstration, ...]
    origin: Literal["labeled", "bootstrapped", "written"] = "written"
    ids: tuple[str, ...] = ()

    def apply(self, spec: PipelineSpec) -> PipelineSpec:
        return on_node(spec, self, lambda n: {"demonstrations": self.demonstrations})

    def describe(self) -> str:
        ids = f" ({', '.join(self.ids)})" if self.ids else ""
        return f"{self.node}: {len(self.demonstrations)} {self.origin} demonstrations{ids}"


class SetOutputPattern(Edit):
    """A regex a node's str output is forced into by the decoder (None: none)."""

    kind: Literal["output_pattern"] = "output_pattern"
    node: str
    output: str
    pattern: str | None

    def apply(self, spec: PipelineSpec) -> PipelineSpec:
        node = find_node(spec, self.node, self.describe())
        if self.output not in {f.name for f in node.outputs}:
            raise EditError(f"{self.describe()}: {self.output!r} is not an output of {self.node}")
        return on_node(spec, self, lambda n: {"outputs": tuple(
            f.model_copy(update={"pattern": self.pattern}) if f.name == self.output else f
            for f in n.outputs)})

    def describe(self) -> str:
        return f"{self.node}.{self.output} pattern {self.pattern}" if self.pattern is not None \
            else f"{self.node}.{self.output}: drop the pattern"


class SetReasoning(Edit):
    """A free-text draft of up to ``chars`` characters before the answer (0: none)."""

    kind: Literal["reasoning"] = "reasoning"
    node: str
    chars: int

    def apply(self, spec: PipelineSpec) -> PipelineSpec:
        return on_node(spec, self, lambda n: {"reasoning": self.chars})

    def describe(self) -> str:
        return f"{self.node}: a reasoning draft of up to {self.chars} characters before the " \
               "answer" if self.chars else f"{self.node}: drop the reasoning draft"


class SetVote(Edit):
    """Self-consistency over several runs (None: one run)."""

    kind: Literal["vote"] = "vote"
    node: str
    vote: Vote | None

    def apply(self, spec: PipelineSpec) -> PipelineSpec:
        return on_node(spec, self, lambda n: {"vote": self.vote})

    def describe(self) -> str:
        return f"{self.node}: self-consistency, the majority of {self.vote.samples} runs" \
            if self.vote else f"{self.node}: drop the vote"


class SetCheck(Edit):
    """Check-and-retry with a declared tool (None: no check; ``tool`` names the check dropped)."""

    kind: Literal["check"] = "check"
    node: str
    check: Check | None
    tool: str = ""

    def apply(self, spec: PipelineSpec) -> PipelineSpec:
        return on_node(spec, self, lambda n: {"check": self.check})

    def describe(self) -> str:
        if self.check is None:
            return f"{self.node}: drop the check with {self.tool}"
        again = "once" if self.check.retries == 1 else f"up to {self.check.retries} times"
        return f"{self.node}: check the answer with {self.check.tool}, answer again {again} if " \
               "it fails"
