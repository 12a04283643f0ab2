"""What every optimizer shares: the learning rate, a step's batch, its proposal, the memory of
earlier updates."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from localsym.agent.spec import PipelineSpec
from localsym.agent.trajectory import Trajectory
from localsym.learn.backward import ExampleGradients, NodeGradient

# Where a step's candidates come from, by the names a config uses (``train.optimizers``): the LLM
# optimizers below (``name`` of each class), written from the gradients, and the sources code
# lists without a model (learn/propose/).
OptimizerName = Literal["prompt", "tool", "pipeline", "demonstrations", "structure", "merge"]
LLM_OPTIMIZERS: tuple[OptimizerName, ...] = ("prompt", "tool", "pipeline")
LISTED_SOURCES: tuple[OptimizerName, ...] = ("demonstrations", "structure", "merge")


class LearningRate(BaseModel):
    """How much one step may change, enforced in code (the config's ``learning_rate``, with the
    same names all the way down): the prompt fields or tool edits one optimizer call may touch,
    the share of a text one edit may rewrite, the workflow actions one call may apply."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_fields: int = Field(2, ge=1)
    max_change: float = Field(0.8, gt=0.0, le=1.0)
    max_actions: int = Field(1, ge=0)


class Change(BaseModel):
    target: str  # a parameter name, e.g. nodes.solve.prompt.task, or workflow
    before: Any = None
    after: Any = None


class Proposal(BaseModel):
    spec: PipelineSpec
    changes: list[Change] = []
    rejected: list[str] = []
    reasoning: str = ""


class Batch(BaseModel):
    """What one training step learned from: the trajectories, their losses and gradients."""

    trajectories: list[Trajectory]
    gradients: list[ExampleGradients]

    def node_gradients(self, node: str) -> list[NodeGradient]:
        return [g for eg in self.gradients for g in eg.nodes if g.node == node]


class UpdateRecord(BaseModel):
    """Optimizer memory: one earlier update and its fate."""

    step: int
    optimizer: str
    changes: list[str]
    accepted: bool
    val_before: float
    val_after: float

    def line(self) -> str:
        verdict = "accepted" if self.accepted else "REJECTED"
        return (f"step {self.step}: {'; '.join(self.changes)[:300]} -> validation "
                f"{self.val_before:.2f} to {self.val_after:.2f}, {verdict}")


class Optimizer(ABC):
    name: str

    @abstractmethod
    def step(self, spec: PipelineSpec, batch: Batch, memory: list[UpdateRecord]) -> Proposal:
        ...


def history(memory: list[UpdateRecord], optimizer: str, about: str = "") -> list[str]:
    return [m.line() for m in memory
            if m.optimizer == optimizer and about in " ".join(m.changes)][-6:]
