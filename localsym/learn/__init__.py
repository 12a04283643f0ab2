"""The algorithm: language loss, back-propagation of language gradients, optimizers, trainer."""

from localsym.learn.backward import ExampleGradients, NodeGradient, backward
from localsym.learn.loss import LanguageLoss, LogProbLoss, Loss, LossRecord, MetricLoss
from localsym.learn.optim import (Batch, DemonstrationOptimizer, Optimizer, PipelineOptimizer,
                                  PromptOptimizer, Proposal, ToolOptimizer, UpdateRecord)
from localsym.learn.trainer import TrainConfig, Trainer, TrainState


def default_optimizers(lm, max_fields: int = 2, max_change: float = 0.8, max_actions: int = 1,
                       params=None) -> dict[str, Optimizer]:
    """One of each LLM optimizer, driven by ``lm`` (``params``: their sampling; default
    META_PARAMS), with the learning rates of ``localsym.config.LearningRate``. The code-listed
    sources (demonstrations, structure, merge) need no model: the trainer runs them itself."""
    return {"prompt": PromptOptimizer(lm, max_fields, max_change, params),
            "tool": ToolOptimizer(lm, max_fields, max_change, params),
            "pipeline": PipelineOptimizer(lm, max_actions, params)}


__all__ = ["Batch", "DemonstrationOptimizer", "ExampleGradients", "LanguageLoss", "LogProbLoss",
           "Loss", "LossRecord", "MetricLoss", "NodeGradient", "Optimizer", "PipelineOptimizer",
           "PromptOptimizer", "Proposal", "ToolOptimizer", "TrainConfig", "TrainState", "Trainer",
           "UpdateRecord", "backward", "default_optimizers"]
