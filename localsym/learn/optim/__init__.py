"""Optimizers: LLMs that turn gradients into a new agent spec.

Each optimizer's ``step(spec, batch)`` takes the gradients of a whole batch, aggregated per node,
and returns a ``Proposal``: typed edits of the spec (``localsym.learn.edits``), the new spec they
make, and the edits rejected with their reason. Specs are immutable, so the old spec is an
exact copy to roll back to. The learning rate (``LearningRate``) is enforced here, in code: how
many fields or actions one step may touch, and how much of a text one edit may change. The
optimizer sees its earlier updates and whether they were accepted (``memory``), so it does not
repeat a rejected edit. Demonstrations, structural edits and merges are listed by code without a
model (``localsym.learn.propose``).
"""

from localsym.learn.optim.base import (DEFAULT_OPTIMIZERS, LISTED_SOURCES, LLM_OPTIMIZERS, Batch,
                                       LearningRate, Optimizer, OptimizerName, Proposal,
                                       UpdateRecord)
from localsym.learn.optim.program import ProgramOptimizer
from localsym.learn.optim.prompt import PromptOptimizer
from localsym.learn.optim.tool import ToolOptimizer, glue_binding
from localsym.learn.optim.workflow import PipelineOptimizer

assert (PromptOptimizer.name, ToolOptimizer.name, PipelineOptimizer.name,
        ProgramOptimizer.name) == LLM_OPTIMIZERS

__all__ = ["DEFAULT_OPTIMIZERS", "LISTED_SOURCES", "LLM_OPTIMIZERS", "Batch", "LearningRate",
           "Optimizer", "OptimizerName", "PipelineOptimizer", "ProgramOptimizer",
           "PromptOptimizer", "Proposal", "ToolOptimizer", "UpdateRecord", "glue_binding"]
