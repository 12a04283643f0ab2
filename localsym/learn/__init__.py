"""The algorithm: language loss, back-propagation of language gradients, optimizers, trainer."""

from localsym.agent import Pipeline, default_tools
from localsym.errors import ConfigError
from localsym.learn.backward import ExampleGradients, NodeGradient, backward
from localsym.learn.loss import LanguageLoss, LogProbLoss, Loss, LossRecord, MetricLoss
from localsym.learn.optim import (Batch, LearningRate, Optimizer, PipelineOptimizer,
                                  ProgramOptimizer, PromptOptimizer, Proposal, ToolOptimizer,
                                  UpdateRecord)
from localsym.learn.state import TrainConfig, TrainState
from localsym.learn.trainer import Trainer
from localsym.lm.base import META_PARAMS


def default_optimizers(lm, rate: LearningRate = LearningRate(),
                       params=META_PARAMS, tools=None) -> dict[str, Optimizer]:
    """One of each LLM optimizer, driven by ``lm`` (``params``: their sampling), with the
    learning ``rate`` (``tools``: the registry a written program is checked with). The
    code-listed sources (demonstrations, structure, merge) need no model: the trainer runs them
    itself."""
    optimizers = (PromptOptimizer(lm, rate, params), ToolOptimizer(lm, rate, params),
                  PipelineOptimizer(lm, rate, params), ProgramOptimizer(lm, rate, params, tools))
    return {o.name: o for o in optimizers}


def build_trainer(spec, agent_lm, optimizer_lm=None, *, metric=None, loss: str = "language",
                  tools=None, sampling=None, meta_sampling=None, train=None,
                  learning_rate: LearningRate | dict | None = None, run_dir=None, log=print,
                  progress: bool = False, budget=None) -> Trainer:
    """The one assembly of a Trainer (``localsym train``, a deployment's rounds,
    ``localsym.train``):
    the agent's pipeline on ``agent_lm``; the loss (``metric``: the metric's score and evidence;
    ``logprob``: the expected answer's log-probability; ``language``: the metric's evidence where
    there is a ground truth, else an LLM judge that sees the declared tools); one of each LLM
    optimizer on ``optimizer_lm`` (default ``agent_lm``) with ``learning_rate``
    (``LearningRate``, or the same as a dict); every meta call sampled with ``meta_sampling``
    (default META_PARAMS)."""
    if loss not in ("language", "metric", "logprob"):
        raise ConfigError(f"unknown loss {loss!r}", "use language, metric or logprob")
    if loss == "metric" and metric is None:
        raise ConfigError("loss metric needs a metric", "give metric= (exact_match, "
                          "numeric_match, humaneval, or your own function)")
    meta_lm, meta = optimizer_lm or agent_lm, meta_sampling or META_PARAMS
    pipeline = Pipeline(spec, agent_lm, tools or default_tools(), sampling)
    loss_fn: Loss
    if loss == "metric":
        loss_fn = MetricLoss(metric)
    elif loss == "logprob":
        loss_fn = LogProbLoss(agent_lm)
    else:
        loss_fn = LanguageLoss(meta_lm, spec.description, metric, meta, spec.tools)
    rate = LearningRate.model_validate(learning_rate or {})
    return Trainer(pipeline, loss_fn, default_optimizers(meta_lm, rate, meta, pipeline.tools),
                   meta_lm, train, metric, run_dir, log=log, meta_sampling=meta, progress=progress,
                   budget=budget)


__all__ = ["Batch", "LearningRate", "ExampleGradients", "LanguageLoss", "LogProbLoss",
           "Loss", "LossRecord", "MetricLoss", "NodeGradient", "Optimizer", "PipelineOptimizer",
           "PromptOptimizer", "Proposal", "ToolOptimizer", "TrainConfig", "TrainState", "Trainer",
           "UpdateRecord", "backward", "build_trainer", "default_optimizers", "META_PARAMS"]
