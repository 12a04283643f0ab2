"""Running an agent over examples and scoring it: the metric where there is a ground truth,
the loss's judge where there is none; the runs batched, with an optional progress bar."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from localsym.agent.pipeline import Pipeline
from localsym.agent.spec import PipelineSpec
from localsym.data import Example
from localsym.errors import CallFailure
from localsym.learn.loss import Loss
from localsym.learn.search import dense_target
from localsym.metrics import Metric, score


# no time-left estimate: batched decoding finishes examples together, so a rate taken from the
# first ones to end says nothing of the rest
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {unit} [{elapsed}{postfix}]"


def progress_bar(items, desc: str, enabled: bool = True, total: int | None = None):
    """A tqdm bar over ``items``, or (items None) one advanced by hand up to ``total``:
    finished examples and the time so far."""
    return tqdm(items, desc=desc, leave=False, disable=not enabled, unit="ex", dynamic_ncols=True,
                total=total, bar_format=BAR_FORMAT)


def forward_all(pipeline: Pipeline, examples: list[Example], bar=None) -> list:
    """Trajectories of ``examples`` in order, their LM calls batched
    (``Pipeline.forward_batch``); ``bar`` counts the examples finished."""
    if bar is not None:
        bar.reset(total=len(examples))
        bar.unit = "ex"
    return pipeline.forward_batch([ex.inputs for ex in examples],
                                  progress=bar.update if bar is not None else None)


def evaluate(pipeline: Pipeline, examples: list[Example], metric: Metric | None, loss: Loss,
             bar=None) -> list[float]:
    """Run ``pipeline`` on each example and score it: the metric where the example has a ground
    truth, else the loss's score (the judge). A run that failed scores 0 under the metric. The
    examples' LM calls are batched; scores keep the examples' order."""
    return evaluate_runs(pipeline, examples, metric, loss, bar)[0]


def evaluate_runs(pipeline: Pipeline, examples: list[Example], metric: Metric | None, loss: Loss,
                  bar=None) -> tuple[list[float], list]:
    """``evaluate``, and the trajectories it scored."""
    examples = list(examples)
    trajectories = forward_all(pipeline, examples, bar)

    out: list = [None] * len(examples)
    judged = []
    for i, (traj, ex) in enumerate(zip(trajectories, examples)):
        if metric is not None and ex.expected is not None:
            out[i] = 0.0 if not traj.ok else score(metric, traj.outputs, ex.expected).score
        else:
            judged.append(i)
    for i, record in zip(judged, loss.batch([(trajectories[i], examples[i]) for i in judged])):
        if isinstance(record, Exception):
            raise record
        out[i] = record.score
    if bar is not None and out:
        bar.set_postfix(score=f"{np.mean(out):.3f}")
    return out, trajectories


def dense_score(lm, spec: PipelineSpec, examples: list[Example], trajectories: list
                ) -> float | None:
    """Mean per-token log-probability of the gold answers under the final node's prompt of
    each run (the answer in the format that node gives), or None where it does not apply:
    no ground truth, an answer bound to a tool, a model without log-probabilities."""
    total = []
    for ex, traj in zip(examples, trajectories):
        target = dense_target(spec, ex.expected) if ex.expected else None
        if target is None or not traj.records:
            return None
        try:
            lp, n = lm.logprob(traj.records[-1].messages, target)
        except NotImplementedError:
            return None
        except CallFailure:
            lp, n = -50.0, 1
        total.append(lp / max(n, 1))
    return round(float(np.mean(total)), 6) if total else None
