"""The typed edit algebra: every change a proposer makes to an agent spec is one frozen edit of
a kind below, with a target, a pure ``apply(spec) -> spec`` (validated; an ``EditError`` says
why not) and a ``describe()``. A candidate is its parent plus its edits (``apply_edits``); the
event log, the report, the optimizers' memory and the learning rate read these same objects.

Adding a kind of change is one class: subclass ``Edit`` in the module of what it changes, give
it a ``kind`` literal, ``apply`` and ``describe`` (and ``targets`` if it touches more than its
node), add it to ``AnyEdit`` here, propose it where it belongs (``learn/propose/`` or an
optimizer), and test it in ``tests/test_edits.py``."""

from __future__ import annotations

from typing import Annotated, Iterable, Union

from pydantic import Field, TypeAdapter

from localsym.agent.spec import PipelineSpec
from localsym.learn.edits.base import Edit, EditError
from localsym.learn.edits.graph import AddNode, RemoveNode, Rewire
from localsym.learn.edits.node import (SetCheck, SetDemonstrations, SetOutputPattern, SetPrompt,
                                       SetReasoning, SetVote)
from localsym.learn.edits.program import SetProgram
from localsym.learn.edits.team import AddRole, GrowTeam, RemoveRole, SetController
from localsym.learn.edits.tools import (AttachTool, BindOutput, DetachTool, DropCall,
                                        SetArgPattern, SetToolChoice, SetToolText, UnbindOutput,
                                        WriteCall, attached, glued)

AnyEdit = Annotated[Union[AttachTool, DetachTool, SetToolChoice, WriteCall, DropCall, BindOutput,
                          UnbindOutput, SetArgPattern, SetToolText, SetPrompt, SetDemonstrations,
                          SetOutputPattern, SetReasoning, SetVote, SetCheck, GrowTeam, AddRole,
                          RemoveRole, SetController, AddNode, RemoveNode, Rewire, SetProgram],
                    Field(discriminator="kind")]
# An edit as a run's log keeps it: typed, or the line a run of an earlier version wrote.
LoggedEdit = Union[AnyEdit, str]
EDIT_KINDS = {t.model_fields["kind"].default: t for t in AnyEdit.__origin__.__args__}  # type: ignore
_EDITS = TypeAdapter(list[AnyEdit])
_EDIT: TypeAdapter = TypeAdapter(AnyEdit)


def apply_edits(spec: PipelineSpec, edits: Iterable[Edit]) -> PipelineSpec:
    """``spec`` with every edit applied in order; an EditError names the first that cannot."""
    for edit in edits:
        spec = edit.apply(spec)
    return spec


def edit_text(edit: Edit | str | dict) -> str:
    """An edit as a person reads it (typed, or its JSON form; a logged line of an earlier
    version, as it was written)."""
    if isinstance(edit, dict):
        edit = _EDIT.validate_python(edit)
    return edit if isinstance(edit, str) else edit.describe()


def collide(a: Iterable[Edit], b: Iterable[Edit]) -> bool:
    """Whether two edit lists touch a common target (a node, a tool, the graph)."""
    left = frozenset().union(*(e.targets() for e in a))
    return bool(left & frozenset().union(*(e.targets() for e in b)))


def parse_edits(data) -> list[Edit]:
    """Edits from their JSON form (a run's log, a checkpoint)."""
    return list(_EDITS.validate_python(data))


__all__ = ["AddNode", "AddRole", "AnyEdit", "AttachTool", "BindOutput", "DetachTool", "DropCall",
           "EDIT_KINDS", "Edit", "EditError", "GrowTeam", "LoggedEdit", "RemoveNode",
           "RemoveRole", "Rewire", "SetArgPattern", "SetCheck", "SetController",
           "SetDemonstrations", "SetOutputPattern", "SetProgram", "SetPrompt", "SetReasoning",
           "SetToolChoice", "SetToolText", "SetVote", "UnbindOutput", "WriteCall", "apply_edits",
           "attached", "collide", "edit_text", "glued", "parse_edits"]
