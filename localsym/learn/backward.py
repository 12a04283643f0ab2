"""Back-propagation in language: the chain rule over the trajectory, last node to first.

Like micrograd's ``Value.backward``: the trajectory is the tape, and in reverse order each node
record gets its gradient from the gradients after it (the loss for the record that gave the
answer, the "requirement" of every later record that read its outputs) plus its own inputs,
outputs and weights. Then one gradient for the workflow as a whole.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from localsym.agent.spec import PipelineSpec
from localsym.agent.weights import PROMPT_FIELDS
from localsym.agent.trajectory import Trajectory
from localsym.errors import CallFailure
from localsym.learn.loss import LossRecord
from localsym.lm.base import LM, META_PARAMS, SamplingParams
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
    role: str | None = None  # a node with roles: one gradient per role that spoke


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
    return backward_batch([trajectory], [loss], spec, lm, [example_id], params, workflow)[0]


def backward_batch(trajectories: list[Trajectory], losses: list[LossRecord], spec: PipelineSpec,
                   lm: LM, example_ids: list[str], params: SamplingParams | None = None,
                   workflow: bool = True, contain: bool = False) -> list:
    """``backward`` over a batch, layer by layer: the last node run of every example, then the
    one before it, ..., then the workflow gradients; each layer's calls go to the LM as one
    batch (``LM.call_batch``). Each example's gradients are exactly what
    ``backward`` gives it alone. With ``contain``, a call that fails on its own (``CallFailure``)
    costs its example only: its slot holds the exception."""
    params = params or META_PARAMS
    grads: list[dict[tuple[int, str | None], NodeGradient]] = [{} for _ in trajectories]
    failed: list[Exception | None] = [None] * len(trajectories)
    depth = max((len(t.records) for t in trajectories), default=0)
    for k in range(depth):  # k-th run from the end of every trajectory: one batch of calls
        layer = []  # (example, run index, call)
        for e, trajectory in enumerate(trajectories):
            i = len(trajectory.records) - 1 - k
            if i < 0 or failed[e] is not None:
                continue
            later = {j: g for (j, _), g in sorted(grads[e].items(), key=_order, reverse=True)}
            for role, prompt in _gradient_prompts(trajectory.records, i, later, losses[e], spec):
                layer.append((e, (i, role), ([{"role": "user", "content": prompt}],
                                             NodeGradientAnswer, params)))
        for (e, key, _), answer in zip(layer, _answers(lm, [c for _, _, c in layer], contain)):
            if isinstance(answer, Exception):
                failed[e] = answer
                continue
            record = trajectories[e].records[key[0]]
            grads[e][key] = NodeGradient(
                node=record.node, example_id=example_ids[e], analysis=answer.analysis,
                suggestions={s.field: s.suggestion for s in answer.suggestions},
                tool_feedback=answer.tool_feedback, requirement=answer.requirement,
                loss_score=losses[e].score, role=key[1])
    nodes = [[g[k] for k in sorted(g, key=_order)] for g in grads]
    flows: list = [None] * len(trajectories)
    if workflow:
        todo = [e for e in range(len(trajectories)) if failed[e] is None]
        calls = [([{"role": "user", "content": render(
            "workflow_gradient.j2", task=spec.description, spec=spec, trajectory=trajectories[e],
            loss=losses[e], node_gradients=nodes[e])}], WorkflowGradientAnswer, params)
            for e in todo]
        for e, answer in zip(todo, _answers(lm, calls, contain)):
            if isinstance(answer, Exception):
                failed[e] = answer
            else:
                flows[e] = answer
    return [failed[e] if failed[e] is not None else
            ExampleGradients(example_id=example_ids[e], loss=losses[e], nodes=nodes[e],
                             workflow=flows[e]) for e in range(len(trajectories))]


def _answers(lm: LM, calls: list, contain: bool) -> list:
    """The answers of ``calls`` in one batch; a failure is raised unless ``contain`` and it is a
    ``CallFailure``."""
    out = []
    for answer in lm.call_batch(calls) if calls else []:
        if isinstance(answer, Exception) and not (contain and isinstance(answer, CallFailure)):
            raise answer
        out.append(answer if isinstance(answer, Exception) else answer[0])
    return out


def _order(key: tuple[int, str | None]) -> tuple[int, str]:
    return key[0], key[1] or ""


def _gradient_prompts(records, i: int, later: dict[int, NodeGradient], loss: LossRecord,
                      spec: PipelineSpec) -> list[tuple[str | None, str]]:
    """(role, prompt) of each gradient of run ``i``: one for a plain node; for a node with roles,
    one per model role that spoke (gradients are aggregated by role, never by turn index)."""
    record = records[i]
    if not record.turns:
        prompt = _gradient_prompt(records, i, later, loss, spec)
        return [(None, prompt)] if prompt is not None else []
    try:
        node = spec.node(record.node)
    except KeyError:
        return []
    out: list[tuple[str | None, str]] = []
    for role in node.roles:
        turns = [t for t in record.turns if t.role == role.name]
        if role.tool is None and turns:
            out.append((role.name, render(
                "role_gradient.j2", task=spec.description, node=node, role=role, record=record,
                turns=turns, feedback=_feedback(records, i, later, loss),
                prompt_fields=PROMPT_FIELDS)))
    if node.team.policy == "model":
        out.append(("controller", render(
            "role_gradient.j2", task=spec.description, node=node, role=None, record=record,
            turns=record.turns, feedback=_feedback(records, i, later, loss),
            prompt_fields=("task",))))
    return out


def _feedback(records, i: int, later: dict[int, NodeGradient], loss: LossRecord) -> list[dict]:
    """What came after run ``i``: the loss for the last run, the requirements of the later runs
    that read its outputs (the chain rule, in words)."""
    record = records[i]
    feedback = [{"source": "the judge", "text": f"{loss.analysis} Needed: {loss.feedback}"}] \
        if i == len(records) - 1 else []
    for j in range(i + 1, len(records)):
        if j in later and set(records[j].inputs) & set(record.outputs):
            feedback.append({"source": f"step {records[j].node}", "text": later[j].requirement})
    return feedback or [{"source": "the workflow", "text": "no later step used this output"}]


def _gradient_prompt(records, i: int, later: dict[int, NodeGradient], loss: LossRecord,
                     spec: PipelineSpec) -> str | None:
    """The prompt for the gradient of run ``i``, from the loss (last run) and the requirements
    of the later runs that read its outputs: the chain rule, in words. None when the node was
    removed since the trajectory was recorded."""
    record = records[i]
    feedback = _feedback(records, i, later, loss)
    try:
        node = spec.node(record.node)
    except KeyError:
        return None
    return render("gradient.j2", task=spec.description, record=record, node=node,
                  feedback=feedback, prompt_fields=PROMPT_FIELDS, tools=spec.tools)


def loss_as_gradients(trajectory: Trajectory, loss: LossRecord, example_id: str
                      ) -> ExampleGradients:
    """No back-propagation (the paper's AutoPE-style baseline): every node run gets the final
    loss's analysis and feedback as its gradient, with no LLM call and no chain rule."""
    nodes = [NodeGradient(node=r.node, example_id=example_id, analysis=loss.analysis,
                          suggestions={}, tool_feedback="none",
                          requirement="nothing", loss_score=loss.score)
             for r in trajectory.records]
    for g in nodes:
        g.analysis = f"{loss.analysis} Needed: {loss.feedback}"
    return ExampleGradients(example_id=example_id, loss=loss, nodes=nodes)


class Backward:
    """The backward pass of a step, beside ``Loss`` and the optimizers: language gradients for
    the failing examples, last node to first (``backprop``), or each node given the final loss's
    feedback alone (no calls: the AutoPE-style ablation). A meta call that fails costs its
    example only: the reason is returned beside the gradients."""

    def __init__(self, lm: LM, params: SamplingParams | None = None, backprop: bool = True):
        self.lm, self.params, self.backprop = lm, params, backprop

    def __call__(self, failing: list, spec: PipelineSpec, workflow: bool
                 ) -> tuple[list[ExampleGradients], list[str]]:
        """Gradients of ``failing`` (``ScoredExample``s), and why the others have none."""
        if not failing:
            return [], []
        if self.backprop:
            results = backward_batch([s.trajectory for s in failing], [s.loss for s in failing],
                                     spec, self.lm, [s.example.id for s in failing],
                                     params=self.params, workflow=workflow, contain=True)
        else:
            results = [loss_as_gradients(s.trajectory, s.loss, s.example.id) for s in failing]
        grads, failures = [], []
        for s, result in zip(failing, results):
            if isinstance(result, Exception):
                failures.append(f"example {s.example.id}: {type(result).__name__}: "
                                f"{result.cause}")
            else:
                grads.append(result)
        return grads, failures
