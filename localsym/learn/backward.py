"""Back-propagation in language: the chain rule over the trajectory, last node to first.

Like micrograd's ``Value.backward``: the trajectory is the tape, and in reverse order each node
record gets its gradient from the gradients after it (the loss for the record that gave the
answer, the "requirement" of every later record that read its outputs) plus its own inputs,
outputs and weights. Then one gradient for the workflow as a whole.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from localsym.agent.spec import PROMPT_FIELDS, PipelineSpec
from localsym.agent.trajectory import Trajectory
from localsym.learn.loss import META_PARAMS, LossRecord
from localsym.lm.base import LM, SamplingParams
from localsym.templates import render


class FieldSuggestion(BaseModel):
    field: Literal[PROMPT_FIELDS]
    suggestion: str


class NodeGradientAnswer(BaseModel):
    """What the LLM answers for one node."""

    analysis: str
    suggestions: list[FieldSuggestion] = Field(max_length=len(PROMPT_FIELDS))
    tool_feedback: str
    requirement: str = Field(description="what this step needs from the steps before it")


class WorkflowGradientAnswer(BaseModel):
    analysis: str
    suggestion: str


class NodeGradient(BaseModel):
    """The gradient of one node run, on one example."""

    node: str
    example_id: str
    analysis: str
    suggestions: dict[str, str]
    tool_feedback: str
    requirement: str
    loss_score: float


class ExampleGradients(BaseModel):
    """Everything backward computed for one trajectory."""

    example_id: str
    loss: LossRecord
    nodes: list[NodeGradient]  # in execution order
    workflow: WorkflowGradientAnswer | None = None


def backward(trajectory: Trajectory, loss: LossRecord, spec: PipelineSpec, lm: LM,
             example_id: str, params: SamplingParams | None = None,
             workflow: bool = True) -> ExampleGradients:
    """Language gradients for every node run in ``trajectory`` (reverse order) and the workflow."""
    params = params or META_PARAMS
    records = trajectory.records
    grads: dict[int, NodeGradient] = {}
    for i in reversed(range(len(records))):
        record = records[i]
        feedback = [{"source": "the judge", "text": f"{loss.analysis} Needed: {loss.feedback}"}] \
            if i == len(records) - 1 else []
        for j in range(i + 1, len(records)):  # the later runs that read this run's outputs
            if j in grads and set(records[j].inputs) & set(record.outputs):
                feedback.append({"source": f"step {records[j].node}",
                                 "text": grads[j].requirement})
        if not feedback:
            feedback = [{"source": "the workflow", "text": "no later step used this output"}]
        try:
            node = spec.node(record.node)
        except KeyError:  # the node was removed since this trajectory was recorded
            continue
        prompt = render("gradient.j2", task=spec.description, record=record, node=node,
                        feedback=feedback, prompt_fields=PROMPT_FIELDS)
        answer = lm.generate([{"role": "user", "content": prompt}], NodeGradientAnswer, params)
        grads[i] = NodeGradient(
            node=record.node, example_id=example_id, analysis=answer.analysis,
            suggestions={s.field: s.suggestion for s in answer.suggestions},
            tool_feedback=answer.tool_feedback, requirement=answer.requirement,
            loss_score=loss.score)
    nodes = [grads[i] for i in sorted(grads)]
    flow = None
    if workflow:
        prompt = render("workflow_gradient.j2", task=spec.description, spec=spec,
                        trajectory=trajectory, loss=loss, node_gradients=nodes)
        flow = lm.generate([{"role": "user", "content": prompt}], WorkflowGradientAnswer, params)
    return ExampleGradients(example_id=example_id, loss=loss, nodes=nodes, workflow=flow)
