"""A proposer's output: children of the parent, each its typed edits and the spec they make."""

from __future__ import annotations

from typing import NamedTuple

from localsym.agent.spec import PipelineSpec
from localsym.learn.edits import Edit, EditError, apply_edits


class Child(NamedTuple):
    """One candidate's edits, the spec they make of the parent, and a note for the reader
    (how it was found)."""

    edits: list[Edit]
    spec: PipelineSpec
    note: str = ""

    @property
    def text(self) -> str:
        """The edits as a person reads them, ``; ``-separated."""
        return "; ".join(e.describe() for e in self.edits)


def children(parent: PipelineSpec, groups: list[list[Edit]], note: str = "") -> list[Child]:
    """Each edit group applied to ``parent``; a group that cannot apply, or changes nothing, is
    left out."""
    out = []
    for edits in groups:
        try:
            spec = apply_edits(parent, edits)
        except EditError:
            continue
        if spec != parent:
            out.append(Child(list(edits), spec, note))
    return out
