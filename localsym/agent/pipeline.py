"""The symbolic network at run time: a PipelineSpec bound to an LM and a tool registry.

``forward`` runs the graph on one example and returns the Trajectory (the tape that ``backward``
walks). ``parameters`` lists the trainable symbolic weights, PyTorch-style.
"""

from __future__ import annotations

import json
import time
from typing import Any

from localsym.agent.bindings import (bound_outputs, check_feedback, glue_failure, majority,
                                     run_check, wired_call)
from localsym.agent.conversation import conversation
from localsym.agent.drive import drive
from localsym.agent.glue import GlueError
from localsym.agent.node import REASONING_FIELD, NodeSpec
from localsym.agent.program import run_program
from localsym.agent.schemas import ROUTE_FIELD, outputs_model, step_model
from localsym.agent.spec import PipelineSpec
from localsym.agent.weights import PROMPT_FIELDS
from localsym.agent.tools import ToolRegistry, default_tools
from localsym.agent.parameters import Parameter, parameters
from localsym.agent.trajectory import NodeRecord, Trajectory
from localsym.errors import CallFailure, ConfigError
from localsym.lm.base import AGENT_PARAMS, LM, SamplingParams
from localsym.seeds import Slot
from localsym.templates import render, render_text
from localsym.text import unencodable


class Pipeline:
    """An agent: a spec (its weights and graph), the LM it runs on, and its tools."""

    def __init__(self, spec: PipelineSpec, lm: LM, tools: ToolRegistry | None = None,
                 params: SamplingParams | None = None):
        if not isinstance(spec, PipelineSpec):
            raise ConfigError(f"a Pipeline needs a PipelineSpec, not {type(spec).__name__}",
                              "load one: PipelineSpec.load('agent.yaml')")
        if not isinstance(lm, LM):
            raise ConfigError(f"a Pipeline needs an LM, not {type(lm).__name__} ({lm!r:.40})",
                              "open one: localsym.lm.open_lm() (or open_lm('stub'))")
        if tools is not None and not isinstance(tools, ToolRegistry):
            raise ConfigError(f"tools must be a ToolRegistry, not {type(tools).__name__}",
                              "build one: ToolRegistry(), then registry.register(fn)")
        if params is not None and not isinstance(params, SamplingParams):
            raise ConfigError(f"params must be SamplingParams, not {type(params).__name__}",
                              "pass SamplingParams(max_tokens=...) or leave it out")
        self.lm = lm
        self.tools = tools or default_tools()
        self.params = params or AGENT_PARAMS
        self.spec = spec

    @property
    def spec(self) -> PipelineSpec:
        return self._spec

    @spec.setter
    def spec(self, spec: PipelineSpec) -> None:
        check_tools(spec, self.tools)
        self._spec = spec

    def using(self, spec: PipelineSpec) -> "Pipeline":
        """The same agent (model, tools, sampling) with the weights of ``spec``."""
        return Pipeline(spec, self.lm, self.tools, self.params)

    # -- PyTorch-style access to the weights ----------------------------------------------------
    def parameters(self) -> list[Parameter]:
        """The trainable symbolic weights, named (``agent/parameters.py``)."""
        return parameters(self.spec)

    # -- forward --------------------------------------------------------------------------------
    def forward(self, example: dict[str, Any]) -> Trajectory:
        """Run the graph on one example's inputs."""
        return self.forward_batch([example])[0]

    def forward_batch(self, examples: list[dict[str, Any]], progress=None) -> list[Trajectory]:
        """Run the graph on a batch. Every example runs as its own sequence of LM calls; each
        round, the next call of every example goes to the LM as one batch (decoded together on
        the in-process model, sent concurrently to a server). Each example's trajectory is
        exactly what ``forward`` gives it alone (per-call seeds depend on the node and step,
        not on order). ``progress(1)`` is called as each example's run ends."""
        spec = self.spec
        if isinstance(examples, (str, bytes, dict)) or not isinstance(examples, (list, tuple)):
            raise ConfigError(f"the examples are {type(examples).__name__}, not a list",
                              "give a list of inputs (dicts: input field -> value)")
        for example in examples:
            if not isinstance(example, dict) or not all(isinstance(k, str) for k in example):
                raise ConfigError(f"an example's inputs are {type(example).__name__} "
                                  f"{str(example)[:40]!r}, not a dict of fields",
                                  "give a dict: input field -> value, e.g. {'question': '...'}")
            missing = [f.name for f in spec.inputs if f.name not in example]
            if missing:
                raise ConfigError(f"example lacks the agent's inputs {missing} (it has "
                                  f"{sorted(example)})",
                                  "give every example the spec's input fields")
            bad = unencodable(example)
            if bad:
                raise ConfigError(f"input {bad} holds a lone surrogate (not valid Unicode text)",
                                  "send text that is valid UTF-8 (no unpaired \\ud800-\\udfff "
                                  "escapes)")
        return drive(self.lm, [self._forward_steps(ex, progress) for ex in examples])

    def _forward_steps(self, example: dict[str, Any], progress=None):
        """One example's run as a generator: it yields each LM call (messages, schema, params)
        and is sent back the call's (value, completion), or thrown its failure."""
        spec = self.spec
        bound = spec.max_steps or len(spec.nodes)
        traj = Trajectory(example=dict(example))
        state = {f.name: example[f.name] for f in spec.inputs}
        current: str | None = spec.start_node
        seconds = 0.0
        while current is not None:
            if len(traj.records) >= bound:
                traj.error = f"stopped after max_steps={bound} node runs"
                break
            record = yield from self._node_run(spec.node(current), state, len(traj.records))
            traj.records.append(record)
            seconds += record.seconds
            if record.error:
                traj.error = f"node {current}: {record.error}"
                break
            state.update(record.outputs)
            successors = spec.successors(current)
            current = record.route if len(successors) > 1 else (
                successors[0].target if successors else None)
        traj.state = state
        if traj.records:
            traj.outputs = dict(traj.records[-1].outputs)
        traj.seconds = seconds
        if progress is not None:
            progress(1)
        return traj

    __call__ = forward

    def messages_for(self, node: NodeSpec, inputs: dict[str, Any]) -> list[dict[str, str]]:
        """The chat messages of a node: weights in the system message, demonstrations as earlier
        turns, inputs last."""
        spec = self.spec
        routes = spec.successors(node.name)
        weights = {f: render_text(getattr(node.prompt, f), **inputs) for f in PROMPT_FIELDS}
        system = render("node.j2", node=node, task=spec.description, weights=weights,
                        outputs=node.outputs, routes=routes if len(routes) > 1 else [],
                        tools=[spec.tool(t) for t in node.tools])
        messages = [{"role": "system", "content": system}]
        for demo in node.demonstrations:
            messages.append({"role": "user",
                             "content": render("node_input.j2", inputs=demo.inputs)})
            messages += demo_turns(node, demo)
        messages.append({"role": "user", "content": render("node_input.j2", inputs=inputs)})
        return messages

    def sampling(self, node: NodeSpec, slot: Slot) -> SamplingParams:
        """The sampling of one model call of ``node`` (its ``slot``: ``localsym.seeds``): the
        agent's, with a seed of the call's own (independent of call order), and a vote's
        temperature for a vote's extra runs."""
        update: dict[str, Any] = {"seed": slot.seed_for(self.params.seed, node.name)}
        if slot.sample and node.vote is not None and slot.sample < node.vote.samples:
            update["temperature"] = node.vote.temperature
        return self.params.model_copy(update=update)

    def _step_schema(self, node: NodeSpec, routes: tuple[str, ...], may_finish: bool):
        patterns = tuple((t, tuple(sorted(self.spec.tool(t).patterns.items())))
                         for t in node.tools if self.spec.tool(t).patterns)
        return step_model(node.name, node.outputs, routes, node.tools, self.tools, may_finish,
                          patterns, node.reasoning)

    def _node_run(self, node: NodeSpec, state: dict[str, Any], step: int):
        """One node run as its spec asks: once, or ``vote.samples`` times and the majority's
        outputs; then, with ``check``, checked and answered again while the check fails. A node
        with roles runs its conversation (``agent.conversation``)."""
        if node.roles:
            return (yield from self._team_run(node, state, step))
        ran = self._program_run(node, state)
        if ran is not None and ran[0] is not None:
            return ran[0]  # the program gave every output: no model call
        record = yield from self._node_steps(node, state, step)
        if ran is not None:  # the program failed on this example, or gave some outputs only
            record.tool_calls = ran[1].tool_calls + record.tool_calls
            record.outputs = {**record.outputs, **ran[1].outputs} if not record.error \
                else record.outputs
        if node.vote is not None and not record.error:
            runs = [record]
            for sample in range(1, node.vote.samples):
                runs.append((yield from self._node_steps(node, state, step, sample)))
            record = runs[majority([None if r.error else {**r.outputs, "next_step": r.route}
                                    for r in runs])]
            record.samples = [r.outputs for r in runs]
            record.calls = sum(r.calls for r in runs)
            record.seconds = sum(r.seconds for r in runs)
            record.tokens = sum(r.tokens for r in runs)
        if node.check is not None and not record.error:
            yield from self._checked(node, record, step)
        return record

    def _program_run(self, node: NodeSpec, state: dict[str, Any]
                     ) -> tuple[NodeRecord | None, NodeRecord] | None:
        """The node's program on this example (None: it has none): the record of a run that
        needs no model (every output given, and no route to choose), else None; and the record
        of what the program did (its calls, the outputs it gave)."""
        if node.program is None:
            return None
        start = time.perf_counter()
        record, inputs = _new_record(node, state)
        if record.error:
            return None, record
        outputs, calls, failed = run_program(node.program, node.outputs, inputs, self.tools)
        record.tool_calls, record.outputs = calls, outputs
        record.seconds = time.perf_counter() - start
        complete = failed is None and set(outputs) == {f.name for f in node.outputs} and \
            len(self.spec.successors(node.name)) <= 1
        return (record if complete else None), record

    def _team_run(self, node: NodeSpec, state: dict[str, Any], step: int):
        """A node with roles: its conversation, recorded turn by turn."""
        start = time.perf_counter()
        record, inputs = _new_record(node, state)
        if record.error:
            return record
        try:
            yield from conversation(self, node, inputs, step, record)
        except CallFailure as err:
            record.error = f"{type(err).__name__}: {err}"
        spoken = [t for t in record.turns if t.messages]
        record.messages = spoken[-1].messages if spoken else []
        record.tool_calls = [t.tool_call for t in record.turns if t.tool_call is not None]
        record.seconds = time.perf_counter() - start
        return record

    def _checked(self, node: NodeSpec, record: NodeRecord, step: int):
        """Check ``record``'s outputs with the node's checking tool; while the check fails, show
        the model why and let it answer again (up to ``check.retries`` times)."""
        assert node.check is not None
        routes = tuple(e.target for e in self.spec.successors(node.name))
        out_model = outputs_model(node.name, node.outputs, routes, node.reasoning)
        messages = record.messages
        for retry in range(node.check.retries + 1):
            passed, call = run_check(node, self.tools, record.inputs, record.outputs)
            record.tool_calls.append(call)
            if passed or retry == node.check.retries:
                break
            messages = messages + [
                {"role": "assistant", "content": json.dumps(record.outputs, ensure_ascii=False)},
                {"role": "user", "content": check_feedback(call)}]
            record.calls += 1
            try:
                answer, completion = yield (messages, out_model,
                                            self.sampling(node, Slot.retry(step, retry)))
                record.count(completion)
            except CallFailure as err:
                record.error = f"{type(err).__name__}: {err}"
                break
            outputs = answer.model_dump()
            record.route = outputs.pop(ROUTE_FIELD, None)
            record.reasoning = outputs.pop(REASONING_FIELD, None) if node.reasoning else None
            record.outputs = outputs
        record.messages = messages

    def _node_steps(self, node: NodeSpec, state: dict[str, Any], step: int, sample: int = 0):
        """One node run as a generator of LM calls (see ``_forward_steps``); returns its record."""
        start = time.perf_counter()
        routes = tuple(e.target for e in self.spec.successors(node.name))
        record, inputs = _new_record(node, state)
        if record.error:
            return record
        record.messages = self.messages_for(node, inputs)
        out_model = outputs_model(node.name, node.outputs, routes, node.reasoning)
        try:
            answer, bound = None, {}
            if node.tools:
                answer, bound = yield from self._tool_loop(node, routes, out_model, inputs, step,
                                                           sample, record)
            if answer is None:
                record.calls += 1
                answer, completion = yield (record.messages, out_model,
                                            self.sampling(node, Slot.answer(step, sample)))
                record.count(completion)
            outputs = {**answer.model_dump(), **bound}
            record.route = outputs.pop(ROUTE_FIELD, None)
            record.reasoning = outputs.pop(REASONING_FIELD, None) if node.reasoning else None
            record.outputs = outputs
        except CallFailure as err:
            record.error = f"{type(err).__name__}: {err}"  # cause and fix
        record.seconds = time.perf_counter() - start
        return record

    def _tool_loop(self, node: NodeSpec, routes: tuple[str, ...], out_model, inputs: dict,
                   step: int, sample: int, record: NodeRecord):
        """A node's bounded tool loop: the first call written by the spec (``arg_from``) or the
        model's, then a call or ``finish`` each step, every turn added to ``record.messages``
        (the whole conversation, kept even on a failure); returns (answer or None, the outputs
        bound to a result)."""
        bound: dict[str, Any] = {}
        try:
            wired = wired_call(node, inputs)
        except GlueError as err:  # the model makes the first call instead
            wired = None
            record.tool_calls.append(glue_failure(node, err))
        for i in range(node.max_tool_steps):
            if i == 0 and wired is not None:  # the spec writes the first call
                tool, args = wired
                text = json.dumps({"action": {"tool": tool, "args": args}}, ensure_ascii=False)
            else:
                may_finish = i > 0 or node.tool_choice == "auto"
                record.calls += 1
                value, completion = yield (record.messages,
                                           self._step_schema(node, routes, may_finish),
                                           self.sampling(node, Slot.tool_step(step, i, sample)))
                record.count(completion)
                if value.action.tool == "finish":
                    return value.action.outputs, bound
                tool, args = value.action.tool, value.action.args.model_dump()
                text = completion.text
            call = self.tools.call(tool, args)
            record.tool_calls.append(call)
            seen = call.result if call.ok else f"ERROR: {call.error}"
            record.messages = record.messages + [
                {"role": "assistant", "content": text},
                {"role": "user", "content": f"Result of {call.tool}: {seen}"}]
            bound.update(bound_outputs(node, call))
            if bound and len(routes) <= 1 and all(f.name in bound for f in node.outputs):
                # every output is bound: the answer, with no draft (the model wrote none)
                return outputs_model(node.name, node.outputs, routes).model_validate(bound), \
                    bound
        # the loop is bounded: the last word is an answer
        record.messages = record.messages + [{"role": "user",
                                              "content": "Give your final answer now."}]
        return None, bound

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path) -> None:
        self.spec.save(path)

    @classmethod
    def load(cls, path, lm: LM, tools: ToolRegistry | None = None,
             params: SamplingParams | None = None) -> "Pipeline":
        return cls(PipelineSpec.load(path), lm, tools, params)


def _new_record(node: NodeSpec, state: dict[str, Any]) -> tuple[NodeRecord, dict[str, Any]]:
    """The record of one run of ``node`` and its inputs from ``state``; the record holds an
    error when an input was never produced on this path."""
    inputs = {i: state[i] for i in node.inputs if i in state}
    record = NodeRecord(node=node.name, inputs=inputs, weights=node.model_dump(mode="json"),
                        messages=[])
    missing = [i for i in node.inputs if i not in state]
    if missing:
        record.error = f"inputs {missing} were never produced on this path"
    return record, inputs


def check_tools(spec: PipelineSpec, tools: ToolRegistry) -> None:
    """A ConfigError unless every tool ``spec`` declares has code in ``tools`` and every tool
    argument it names (a written call, a check) is one of that tool's arguments."""
    for t in spec.tools:
        tools.get(t.name)
    for node in spec.nodes:
        keys = list(node.arg_from) + ([f"{node.check.tool}.{a}" for a in node.check.args]
                                      if node.check else []) + \
            [f"{r.tool}.{a}" for r in node.roles if r.tool for a in r.args] + \
            [f"{t}.{a}" for t, a in (node.program.tool_args() if node.program else ())]
        for key in keys:
            tool, _, arg = key.partition(".")
            known = list(tools.get(tool).args_model.model_fields)
            if arg not in known:
                raise ConfigError(f"node {node.name!r} names {key!r}, but tool {tool!r} has "
                                  f"the arguments {known}", "name one of the tool's arguments")


def demo_turns(node: NodeSpec, demo) -> list[dict[str, str]]:
    """A demonstration's answer as the turns the node really produces: bare outputs for a node
    without tools; for a node with tools, each tool call and its result, then ``finish`` (left
    out when every output is bound to a tool result: the node ends at the call)."""
    if not node.tools:
        return [{"role": "assistant", "content": json.dumps(demo.outputs)}]
    turns = []
    for c in demo.tool_calls:
        turns.append({"role": "assistant", "content": json.dumps(
            {"action": {"tool": c.tool, "args": c.args}})})
        turns.append({"role": "user", "content": f"Result of {c.tool}: {c.result}"})
    if not (demo.tool_calls and node.bind and
            all(f.name in node.bind for f in node.outputs)):
        turns.append({"role": "assistant", "content": json.dumps(
            {"action": {"tool": "finish", "outputs": demo.outputs}})})
    return turns
