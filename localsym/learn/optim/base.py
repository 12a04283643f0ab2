"""What every optimizer shares: the learning rate, a step's batch, its proposal (typed edits),
the memory of earlier updates."""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from localsym.agent.spec import PipelineSpec
from localsym.agent.trajectory import Trajectory
from localsym.learn.backward import ExampleGradients, NodeGradient
from localsym.learn.edits import Edit, EditError, LoggedEdit, edit_text
from localsym.learn.edits.base import MAX_TEXT
from localsym.templates import variables_of

# Where a step's candidates come from, by the names a config uses (``train.optimizers``): the LLM
# optimizers below (``name`` of each class), written from the gradients, and the sources code
# lists without a model (learn/propose/).
OptimizerName = Literal["prompt", "tool", "pipeline", "program", "demonstrations", "structure",
                        "merge"]
LLM_OPTIMIZERS: tuple[OptimizerName, ...] = ("prompt", "tool", "pipeline", "program")
LISTED_SOURCES: tuple[OptimizerName, ...] = ("demonstrations", "structure", "merge")
# what a run uses unless its config names others: the program optimizer is asked for (a larger
# model writes programs worth checking; a small one spends calls on it for nothing)
DEFAULT_OPTIMIZERS: tuple[OptimizerName, ...] = ("prompt", "tool", "pipeline") + LISTED_SOURCES
MIN_EDIT = 200  # characters one edit may always change, however short the text


class LearningRate(BaseModel):
    """How much one step may change, enforced in code (the config's ``learning_rate``, with the
    same names all the way down): the prompt fields or tool edits one optimizer call may touch,
    the share of a text one edit may rewrite, the workflow actions one call may apply, and (by
    edit kind, ``max_per_kind``) how many edits of a kind one proposal may hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_fields: int = Field(2, ge=1)
    max_change: float = Field(0.8, gt=0.0, le=1.0)
    max_actions: int = Field(1, ge=0)
    max_per_kind: dict[str, int] = Field({}, description="edit kind -> the most edits of that "
                                         "kind one proposal may hold (none: no limit)")

    def text_edit(self, old: str, new: str, allowed_vars: set[str]) -> str | None:
        """Why rewriting ``old`` as ``new`` is not allowed, or None: at most ``max_change`` of
        the old text's characters change (and always MIN_EDIT), no input variable dropped, no
        unknown one used, at most MAX_TEXT characters."""
        if len(new) > MAX_TEXT:
            return f"new text is {len(new)} characters (limit {MAX_TEXT})"
        dropped = variables_of(old) - variables_of(new)
        if dropped:
            return f"drops the input variable(s) {sorted(dropped)}"
        unknown = variables_of(new) - allowed_vars
        if unknown:
            return f"uses unknown variable(s) {sorted(unknown)}"
        edited = sum(max(i2 - i1, j2 - j1) for op, i1, i2, j1, j2 in
                     difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
                     if op != "equal")
        allowed = max(int(self.max_change * len(old)), MIN_EDIT)
        if edited > allowed:
            return (f"edits {edited} characters (the learning rate allows {allowed}: "
                    f"{self.max_change:.0%} of the text, at least {MIN_EDIT})")
        return None

    def over_kind(self, edits: list[Edit], edit: Edit) -> str | None:
        """Why ``edit`` may not join ``edits`` by the per-kind limit, or None."""
        kind = getattr(edit, "kind", "")
        limit = self.max_per_kind.get(kind)
        if limit is not None and sum(getattr(e, "kind", "") == kind for e in edits) >= limit:
            return f"over the {limit}-edit limit for {kind} edits"
        return None


class Proposal(BaseModel):
    """What one optimizer call proposes: its parent with typed edits applied in order (``spec``),
    the edits refused on the way (with why), and the model's reasoning."""

    spec: PipelineSpec
    edits: list[Edit] = []
    rejected: list[str] = []
    reasoning: str = ""
    rate: LearningRate = LearningRate()

    def add(self, edit: Edit) -> bool:
        """Apply ``edit`` on top of the edits so far; refused (with why) when the learning rate's
        per-kind limit is reached or the edit cannot apply."""
        why = self.rate.over_kind(self.edits, edit)
        if why is None:
            try:
                self.spec = edit.apply(self.spec)
            except EditError as err:
                why = err.cause
        if why is not None:
            self.rejected.append(f"{edit.describe()}: {why}")
            return False
        self.edits.append(edit)
        return True


class Batch(BaseModel):
    """What one training step learned from: the trajectories, their losses and gradients."""

    trajectories: list[Trajectory]
    gradients: list[ExampleGradients]
    rows: list[dict] = Field([], description="the examples of the batch (inputs, expected)")

    def node_gradients(self, node: str) -> list[NodeGradient]:
        return [g for eg in self.gradients for g in eg.nodes if g.node == node]


class UpdateRecord(BaseModel):
    """Optimizer memory: one earlier update (its typed edits) and its fate."""

    step: int
    optimizer: str
    edits: list[LoggedEdit] = []
    accepted: bool
    val_before: float
    val_after: float

    @model_validator(mode="before")
    @classmethod
    def _earlier_format(cls, data):
        """A checkpoint written before edits were typed kept their lines as ``changes``."""
        if isinstance(data, dict) and "changes" in data and "edits" not in data:
            data = {**data, "edits": data["changes"]}
            data.pop("changes")
        return data

    @property
    def lines(self) -> list[str]:
        return [edit_text(e) for e in self.edits]

    def line(self) -> str:
        verdict = "accepted" if self.accepted else "REJECTED"
        return (f"step {self.step}: {'; '.join(self.lines)[:300]} -> validation "
                f"{self.val_before:.2f} to {self.val_after:.2f}, {verdict}")


class Optimizer(ABC):
    name: str

    @abstractmethod
    def step(self, spec: PipelineSpec, batch: Batch, memory: list[UpdateRecord]) -> Proposal:
        ...


def history(memory: list[UpdateRecord], optimizer: str, about: str = "") -> list[str]:
    return [m.line() for m in memory
            if m.optimizer == optimizer and about in " ".join(m.lines)][-6:]
