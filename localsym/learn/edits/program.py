"""The edit of a node's program: its outputs computed by its tools and glue with no model call
(``localsym.agent.program``), found by the synthesis engine (``localsym.learn.synth``)."""

from __future__ import annotations

from typing import Literal

from localsym.agent.program import Program
from localsym.agent.spec import PipelineSpec
from localsym.learn.edits.base import Edit, on_node


class SetProgram(Edit):
    """A node's program (None: none); the tools it calls must be the node's."""

    kind: Literal["program"] = "program"
    node: str
    program: Program | None

    def apply(self, spec: PipelineSpec) -> PipelineSpec:
        return on_node(spec, self, lambda n: {"program": self.program})

    def describe(self) -> str:
        if self.program is None:
            return f"{self.node}: drop the program"
        return f"{self.node}: program {self.program.describe()}"
