"""The algorithm: language loss, back-propagation of language gradients, optimizers, trainer."""

from localsym.learn.backward import ExampleGradients, NodeGradient, backward
from localsym.learn.loss import LanguageLoss, LogProbLoss, Loss, LossRecord, MetricLoss
from localsym.learn.optim import (Batch, DemonstrationOptimizer, Optimizer, PipelineOptimizer,
                                  PromptOptimizer, Proposal, ToolOptimizer, UpdateRecord)
from localsym.learn.trainer import TrainConfig, Trainer, TrainState


def default_optimizers(lm, max_fields: int = 2, max_change: float = 0.8) -> dict[str, Optimizer]:
    """One of each optimizer, driven by ``lm``."""
    return {"prompt": PromptOptimizer(lm, max_fields=max_fields, max_change=max_change),
            "tool": ToolOptimizer(lm, max_change=max_change),
            "pipeline": PipelineOptimizer(lm),
            "demonstrations": DemonstrationOptimizer()}


__all__ = ["Batch", "DemonstrationOptimizer", "ExampleGradients", "LanguageLoss", "LogProbLoss",
           "Loss", "LossRecord", "MetricLoss", "NodeGradient", "Optimizer", "PipelineOptimizer",
           "PromptOptimizer", "Proposal", "ToolOptimizer", "TrainConfig", "TrainState", "Trainer",
           "UpdateRecord", "backward", "default_optimizers"]
