"""Demonstration sets, listed by code: labeled from the ground truth (label-balanced over the
final node's choices) and bootstrapped from runs that scored full marks (every node's turn, tool
calls included, as the node produces them); one candidate per size."""

from __future__ import annotations

import json
from typing import Any, Iterable

import numpy as np

from localsym.agent.spec import PipelineSpec
from localsym.agent.trajectory import Trajectory
from localsym.agent.weights import Demonstration, DemoToolCall
from localsym.data import Example
from localsym.learn.edits import Edit, EditError, SetDemonstrations
from localsym.learn.propose.children import Child, children


def _balanced(rows: list, key, k: int, rng: np.random.Generator) -> list:
    """``k`` rows in a seeded order, taking turns over the groups of ``key`` (label balance)."""
    groups: dict[str, list] = {}
    for i in rng.permutation(len(rows)):
        groups.setdefault(key(rows[i]), []).append(rows[i])
    out: list = []
    queues = [groups[g] for g in sorted(groups)]
    while len(out) < k and any(queues):
        for q in queues:
            if q and len(out) < k:
                out.append(q.pop(0))
    return out


def labeled_demonstrations(spec: PipelineSpec, train: list[Example], sizes: Iterable[int],
                           seed: int) -> list[Child]:
    """Demonstrations written from the ground truth, for the final node when it reads only
    example inputs and has no tools (a tool node's demonstrations must show its tool calls,
    which a label does not have: those come from bootstrapped runs). Label-balanced over the
    node's choice outputs; one candidate per size."""
    node = spec.final_node()
    names = [f.name for f in node.outputs]
    inputs = {f.name for f in spec.inputs}
    if node.tools or not set(node.inputs) <= inputs:
        return []
    rows = [ex for ex in train if ex.expected and set(names) <= set(ex.expected)]
    choice = [f.name for f in node.outputs if f.choices]
    out = []
    for k in sizes:
        rng = np.random.default_rng([seed, k])
        chosen = _balanced(rows, lambda ex: json.dumps([ex.expected[c] for c in choice]), k, rng)
        demos = tuple(Demonstration(inputs={i: ex.inputs[i] for i in node.inputs},
                                    outputs={n: ex.expected[n] for n in names}) for ex in chosen)
        if len(demos) == k:
            out += children(spec, [[SetDemonstrations(node=node.name, demonstrations=demos,
                                                      origin="labeled",
                                                      ids=tuple(ex.id for ex in chosen))]])
    return out


def demonstration_of(record) -> Demonstration:
    """A node run as a demonstration, in the format the node produces (tool turns included)."""
    outputs: dict[str, Any] = dict(record.outputs)
    if record.route:
        outputs["next_step"] = record.route
    calls = tuple(DemoToolCall(tool=c.tool, args=c.args, result=c.result)
                  for c in record.tool_calls if c.ok)
    return Demonstration(inputs=record.inputs, outputs=outputs, tool_calls=calls)


def bootstrapped_demonstrations(spec: PipelineSpec, successes: list[Trajectory],
                                sizes: Iterable[int], seed: int) -> list[Child]:
    """Demonstrations from runs that scored full marks (every node of the run gets its own
    turn as a demonstration), label-balanced over the final outputs; one candidate per size."""
    ok = [t for t in successes if t.ok and t.records]
    out = []
    for k in sizes:
        rng = np.random.default_rng([seed, k, 1])
        chosen = _balanced(ok, lambda t: json.dumps(t.outputs, sort_keys=True), k, rng)
        if len(chosen) < k:
            continue
        edits: list[Edit] = []
        data = spec
        for node in spec.nodes:
            texts = tuple(dict.fromkeys(
                json.dumps(demonstration_of(r).model_dump(mode="json"), sort_keys=True)
                for t in chosen for r in t.records if r.node == node.name))[:k]
            if texts:
                demos = tuple(Demonstration.model_validate_json(d) for d in texts)
                edit = SetDemonstrations(node=node.name, origin="bootstrapped",
                                         demonstrations=demos)
                try:
                    data = edit.apply(data)
                except EditError:
                    continue  # that node's runs do not make valid demonstrations
                edits.append(edit)
        out += children(spec, [edits])
    return out
