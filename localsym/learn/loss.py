"""Language losses: how well a trajectory did, in a score and in words.

``LanguageLoss`` has an LLM judge the whole trajectory (every step, not only the final answer),
with the ground truth and a metric's score when there are. ``MetricLoss`` needs no LLM.
``LogProbLoss`` is the dense one a local model allows: the probability of the ground-truth answer
under the agent's last node, read from the model's logits.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from typing import Literal, NamedTuple

from pydantic import BaseModel, Field

from localsym.agent.trajectory import Trajectory
from localsym.data import Example
from localsym.errors import CallFailure
from localsym.metrics import Metric, MetricResult, score
from localsym.lm.base import LM, META_PARAMS, SamplingParams, unwrap
from localsym.templates import render




class LossRecord(BaseModel):
    """The loss of one trajectory. ``score`` is in [0, 1], higher is better."""

    kind: str
    score: float = Field(ge=0.0, le=1.0)
    analysis: str
    feedback: str = Field(description="what the last node should have done differently")
    metric: float | None = None


class ScoredExample(NamedTuple):
    """One example of a step's batch after its forward pass and loss."""

    trajectory: Trajectory
    example: Example
    loss: LossRecord


class Judgement(BaseModel):
    """What the judge LLM answers."""

    analysis: str = Field(description="what went right and wrong, briefly")
    score: Literal[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    feedback: str = Field(description="what the last step should have done differently")


class Loss(ABC):
    @abstractmethod
    def __call__(self, trajectory: Trajectory, example: Example) -> LossRecord:
        ...

    def batch(self, pairs: list[tuple[Trajectory, Example]]) -> list[LossRecord | Exception]:
        """The loss of many trajectories; a meta call that fails on its own (``CallFailure``)
        is that example's result, never its neighbours'. Losses that call an LLM send the calls
        together (``LM.call_batch``)."""
        out: list[LossRecord | Exception] = []
        for trajectory, example in pairs:
            try:
                out.append(self(trajectory, example))
            except CallFailure as err:
                out.append(err)
        return out


def _metric_score(metric: Metric | None, trajectory: Trajectory, example: Example
                  ) -> MetricResult | None:
    if metric is None or example.expected is None:
        return None
    if not trajectory.ok:
        return MetricResult(0.0, f"the run failed: {trajectory.error}")
    return score(metric, trajectory.outputs, example.expected, explain=True)


def evidence_loss(trajectory: Trajectory, example: Example, result: MetricResult) -> LossRecord:
    """The loss where there is a ground truth: the metric's score and the raw evidence (input,
    what the agent gave, what was expected, the metric's feedback), verbatim, with no LLM
    call. A small model cannot judge better than the metric, and a large one reads the evidence
    in the gradient and optimizer prompts anyway."""
    text = result.feedback or ("correct" if result.score >= 1.0 else
                               f"scored {result.score:.2f}: the answer {trajectory.outputs} "
                               f"should be {example.expected}")
    evidence = (f"input {json.dumps(example.inputs, ensure_ascii=False)[:300]}; got "
                f"{json.dumps(trajectory.outputs, ensure_ascii=False)[:200]}; expected "
                f"{json.dumps(example.expected, ensure_ascii=False)[:200]}: {text}")
    return LossRecord(kind="metric", score=result.score, analysis=evidence,
                      feedback="keep doing the same" if result.score >= 1.0 else text,
                      metric=result.score)


class MetricLoss(Loss):
    """The metric alone (no LLM): the feedback names the fields that differ."""

    def __init__(self, metric: Metric):
        self.metric = metric

    def __call__(self, trajectory: Trajectory, example: Example) -> LossRecord:
        result = _metric_score(self.metric, trajectory, example)
        if result is None:
            raise ValueError(f"example {example.id} has no expected outputs for the metric loss")
        return evidence_loss(trajectory, example, result)


class LanguageLoss(Loss):
    """An LLM judges the trajectory where there is no ground truth (the record's ``score`` is
    the judge's score / 10), or where a person wrote feedback on the answer (the judge reads it;
    the score is the metric's). An example with a ground truth and no such feedback gets the
    metric's score and the raw evidence (``evidence_loss``), with no LLM call."""

    def __init__(self, lm: LM, task: str = "", metric: Metric | None = None,
                 params: SamplingParams | None = None, tools=()):
        self.lm, self.task, self.metric = lm, task, metric
        self.params = params or META_PARAMS
        self.tools = tuple(tools)  # the agent's declared tools (ToolSpec), shown to the judge

    def __call__(self, trajectory: Trajectory, example: Example) -> LossRecord:
        return unwrap(self.batch([(trajectory, example)])[0])

    def batch(self, pairs: list[tuple[Trajectory, Example]]) -> list[LossRecord | Exception]:
        out: list = [None] * len(pairs)
        judged = []  # (index, metric score, judge call)
        for i, (trajectory, example) in enumerate(pairs):
            result = _metric_score(self.metric, trajectory, example)
            metric = result.score if result is not None else None
            if result is not None and not example.feedback:
                out[i] = evidence_loss(trajectory, example, result)
                continue
            prompt = render("loss.j2", task=self.task, trajectory=trajectory,
                            expected=example.expected, metric_score=metric,
                            feedback=example.feedback, tools=self.tools)
            judged.append((i, metric, ([{"role": "user", "content": prompt}], Judgement,
                                       self.params)))
        answers = self.lm.call_batch([call for _, _, call in judged]) if judged else []
        for (i, metric, _), answer in zip(judged, answers):
            if isinstance(answer, Exception):
                out[i] = answer
                continue
            value = answer[0]
            out[i] = LossRecord(kind="language",
                                score=metric if metric is not None else value.score / 10,
                                analysis=value.analysis, feedback=value.feedback, metric=metric)
        return out


class LogProbLoss(Loss):
    """Dense loss: the per-token probability (geometric mean) of the expected answer of the last
    node, given that node's prompt, read from the model's logits. Needs an LM with ``logprob``
    (the in-process llama.cpp backend, cached or not) and examples with expected outputs."""

    def __init__(self, lm: LM):
        self.lm = lm

    def __call__(self, trajectory: Trajectory, example: Example) -> LossRecord:
        if not trajectory.records or example.expected is None:
            return LossRecord(kind="logprob", score=0.0, analysis="no run or no expected answer",
                              feedback="produce an answer")
        last = trajectory.records[-1]
        target = answer_text(last.weights, example.expected)
        if target is None:  # the answer is bound to a tool result: score the run by the metric
            ok = trajectory.ok and all(trajectory.outputs.get(k) == v
                                       for k, v in example.expected.items())
            return LossRecord(kind="logprob", score=float(ok), metric=float(ok),
                              analysis="the answer is a tool's result, not the model's text",
                              feedback="keep doing the same" if ok else "call the tool so that "
                              f"it returns {json.dumps(example.expected)[:200]}")
        total, n = self.lm.logprob(last.messages, target)
        p = math.exp(total / max(n, 1))
        return LossRecord(
            kind="logprob", score=p, metric=p,
            analysis=f"the expected answer {target[:200]} has a per-token probability of {p:.3f} "
                     f"under node {last.node}'s prompt ({total:.1f} nats over {n} tokens)",
            feedback=f"make the expected answer {target[:200]} more likely")


def answer_text(node: dict, expected: dict) -> str | None:
    """The expected outputs as the text node ``node`` (a NodeSpec as a dict) answers with: bare
    outputs, or a ``finish`` action for a node with tools; None when every expected output the
    node gives is bound to a tool result (no text of the model's to score)."""
    names = [f["name"] for f in node.get("outputs", [])]
    outputs = {k: v for k, v in expected.items() if k in names} or dict(expected)
    computed = set(node.get("bind", {})) | set((node.get("program") or {}).get("outputs", {}))
    if set(outputs) <= computed or node.get("reasoning") or node.get("roles"):
        return None  # a tool's result or a program's, an answer after a draft, a conversation's
    if node.get("tools"):
        return json.dumps({"action": {"tool": "finish", "outputs": outputs}}, ensure_ascii=False)
    return json.dumps(outputs, ensure_ascii=False)
