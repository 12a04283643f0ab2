"""Structural edits that code lists from the spec and the tool registry, with no LLM: attach a
declared tool (alone, required, with a vetted argument pattern, with an output bound to its
result, called first with an input), detach it, flip tool_choice, set or drop a pattern, bind
or unbind an output, write or drop the first call, a bounded pattern on a free text output,
test-time compute (a reasoning draft, a vote, a check), roles (grow a team, remove a role, a
turn limit, a policy), remove a node.

Each function returns ``(edits, spec)`` pairs: the edits are one line each (what a person reads
in the report and what the optimizers' memory credits), the spec is the parent with exactly those
edits applied, validated by the same schema as any spec. An edit whose result is not a valid
spec is left out. The search screens every candidate on data, so a listed edit that does not
help costs screening time, never correctness.
"""

from __future__ import annotations

from itertools import zip_longest

from localsym.agent.node import REASONING_FIELD, Check, Controller, NodeSpec, RoleSpec, Vote
from localsym.agent.spec import PipelineSpec
from localsym.agent.tools import ToolRegistry
from localsym.agent.weights import FieldSpec, PromptWeights, ToolSpec
from localsym.errors import ConfigError
from localsym.learn.actions import RemoveNode, apply_action

GENERIC_OUTPUT_PATTERNS = (r'[^"\\\n]{1,40}',)
Listed = tuple[list[str], PipelineSpec]  # one candidate's edits (a line each) and its spec


def build(data: dict, source: str) -> PipelineSpec | None:
    try:
        return PipelineSpec.from_data(data, source=source)
    except ConfigError:
        return None


def with_node(spec: PipelineSpec, node: NodeSpec, tools: dict | None = None) -> PipelineSpec | None:
    """``spec.replace(node, tools)``, or None if that is not a valid spec."""
    try:
        return spec.replace(node, tools)
    except ConfigError:
        return None


def structural_edits(spec: PipelineSpec, registry: ToolRegistry) -> list[Listed]:
    """Every structural edit the spec and the tool registry allow, each one atomic or one
    coherent group: attach a declared tool to a node (alone; required; with each vetted argument
    pattern; with an output bound to the tool's result; called first with an input as its
    argument), detach it, flip ``tool_choice``, set or drop an argument pattern, bind or unbind
    an output, write or drop the first call, force a free str output into a bounded
    pattern, remove a node. Listed in a fixed order (the nodes taking turns), so a run is
    reproducible."""
    declared = [t for t in spec.tools if t.name in registry.names()]
    per_node: list[list[Listed]] = []
    for node in spec.nodes:
        raw: list[_Raw] = []
        fields = [f for f in node.outputs if bindable_field(f)]
        for tspec in declared if not node.roles else ():  # a team: only its own edits
            tool = registry.get(tspec.name)
            bindable = [f.name for f in fields if tool.returns != "bool" and
                        (f.type != "str" or tool.returns == "text")]
            edits = _attach if tspec.name not in node.tools else _attached
            raw += edits(node, tspec, tool, bindable)
        raw += _team(node, spec, registry) if node.roles else \
            _output_patterns(node) + _test_time(node, spec, registry) + _team(node, spec, registry)
        listed = [(edits, with_node(spec, new, tools)) for edits, new, tools in raw]
        per_node.append([(e, new) for e, new in listed if new is not None and new != spec])
    # the nodes take turns, so a step's cut of candidates reaches every node
    out = [c for turn in zip_longest(*per_node) for c in turn if c is not None]
    if len(spec.nodes) > 1:
        for node in spec.nodes:
            try:
                new = apply_action(spec, RemoveNode(action="remove_node", name=node.name))
            except ConfigError:
                continue
            out.append(([f"workflow: remove node {node.name}"], new))
    return out


_Raw = tuple[list[str], NodeSpec, dict | None]  # edits, the node after them, replaced tool specs


def _attach(node: NodeSpec, tspec: ToolSpec, tool, bindable: list[str]) -> list[_Raw]:
    """The groups that give ``node`` the declared tool it lacks; those binding an output to the
    tool's result first (a step screens a cut of the candidates)."""
    t, n = tspec.name, node.name
    out: list[_Raw] = []
    attached = node.model_copy(update={"tools": node.tools + (t,)})
    required = attached.model_copy(update={"tool_choice": "required"})
    out.append(([f"attach tool {t} to {n}"], attached, None))
    out.append(([f"attach tool {t} to {n}", f"require a tool call first in {n}"], required, None))
    for arg, p in _menu(tool):
        pat = {t: tspec.model_copy(update={"patterns": {**tspec.patterns, arg: p}})}
        group = [f"attach tool {t} to {n}", f"require a tool call first in {n}",
                 f"tool {t} argument {arg} pattern {p}"]
        out.append((group, required, pat))
        out += [(group + [f"bind {n}.{f} to the result of {t}"],
                 required.model_copy(update={"bind": {**node.bind, f: t}}), pat) for f in bindable]
    out += [([f"attach tool {t} to {n}", f"require a tool call first in {n}",
              f"bind {n}.{f} to the result of {t}"],
             required.model_copy(update={"bind": {**node.bind, f: t}}), None) for f in bindable]
    for arg, source in _wirings(tool, node):
        wired = attached.model_copy(update={"arg_from": {f"{t}.{arg}": source}})
        group = [f"attach tool {t} to {n}", f"call {t} first with {arg} = {source}"]
        out.append((group, wired, None))
        out += [(group + [f"bind {n}.{f} to the result of {t}"],
                 wired.model_copy(update={"bind": {**node.bind, f: t}}), None) for f in bindable]
    return sorted(out, key=lambda c: not any(e.startswith("bind ") for e in c[0]))


def _attached(node: NodeSpec, tspec: ToolSpec, tool, bindable: list[str]) -> list[_Raw]:
    """The edits of a tool ``node`` already has: drop or write its first call, detach it, flip
    ``tool_choice``, set or drop an argument pattern, bind or unbind an output."""
    t, n = tspec.name, node.name
    out: list[_Raw] = []
    if node.call_tool == t:
        out.append(([f"{n}: drop the written call of {t}"],
                    node.model_copy(update={"arg_from": {}}), None))
    elif not node.arg_from:
        out += [([f"call {t} first with {arg} = {source}"],
                 node.model_copy(update={"arg_from": {f"{t}.{arg}": source}}), None)
                for arg, source in _wirings(tool, node)]
    out.append(([f"detach tool {t} from {n}"], node.model_copy(update={
        "tools": tuple(x for x in node.tools if x != t),
        "bind": {k: v for k, v in node.bind.items() if node.bound_tool(k) != t},
        "arg_from": {} if node.call_tool == t else node.arg_from}),
        None))
    flip = "auto" if node.tool_choice == "required" else "required"
    out.append(([f"tool_choice {flip} in {n}"], node.model_copy(update={"tool_choice": flip}),
                None))
    for arg, p in _menu(tool):
        if tspec.patterns.get(arg) != p:
            out.append(([f"tool {t} argument {arg} pattern {p}"], node, {t: tspec.model_copy(
                update={"patterns": {**tspec.patterns, arg: p}})}))
    for arg in tspec.patterns:
        out.append(([f"tool {t} argument {arg}: drop the pattern"], node, {t: tspec.model_copy(
            update={"patterns": {a: p for a, p in tspec.patterns.items() if a != arg}})}))
    for f in bindable:
        if node.bound_tool(f) == t:
            out.append(([f"unbind {n}.{f}"], node.model_copy(update={
                "bind": {k: v for k, v in node.bind.items() if k != f}}), None))
        else:
            out.append(([f"bind {n}.{f} to the result of {t}"],
                        node.model_copy(update={"bind": {**node.bind, f: t}}), None))
    return out


def _output_patterns(node: NodeSpec) -> list[_Raw]:
    """A bounded pattern on each free str output (a tiny model's free string can run on)."""
    out: list[_Raw] = []
    for f in node.outputs:
        if f.type == "str" and not f.choices and f.pattern is None:
            for p in GENERIC_OUTPUT_PATTERNS:
                outputs = tuple(x.model_copy(update={"pattern": p}) if x.name == f.name else x
                                for x in node.outputs)
                out.append(([f"{node.name}.{f.name} pattern {p}"],
                            node.model_copy(update={"outputs": outputs}), None))
    return out


REASONING_CHARS = 160  # the draft a reasoning candidate allows (about 40 tokens)
VOTE = Vote(samples=3)


def _test_time(node: NodeSpec, spec: PipelineSpec, registry: ToolRegistry) -> list[_Raw]:
    """Test-time compute as structure, each costing model calls per example (screened and gated
    like the rest: a tie never buys cost): a free-text draft before the answer, self-consistency
    over a few sampled runs, check-and-retry with a declared tool that returns a bool and whose
    arguments are the node's inputs or outputs by name."""
    n = node.name
    out: list[_Raw] = []
    if node.reasoning:
        out.append(([f"{n}: drop the reasoning draft"], node.model_copy(update={"reasoning": 0}),
                    None))
    elif REASONING_FIELD not in {f.name for f in node.outputs}:
        out.append(([f"{n}: a reasoning draft of up to {REASONING_CHARS} characters before the "
                     "answer"], node.model_copy(update={"reasoning": REASONING_CHARS}), None))
    out.append(([f"{n}: drop the vote"], node.model_copy(update={"vote": None}), None)
               if node.vote else
               ([f"{n}: self-consistency, the majority of {VOTE.samples} runs"],
                node.model_copy(update={"vote": VOTE}), None))
    if node.check is not None:
        out.append(([f"{n}: drop the check with {node.check.tool}"],
                    node.model_copy(update={"check": None}), None))
        return out
    fields = set(node.inputs) | {f.name for f in node.outputs}
    for tspec in spec.tools:
        if tspec.name not in registry.names() or registry.get(tspec.name).returns != "bool":
            continue
        args = list(registry.get(tspec.name).args_model.model_fields)
        if args and set(args) <= fields and set(args) & {f.name for f in node.outputs}:
            check = Check(tool=tspec.name, args={a: a for a in args})
            out.append(([f"{n}: check the answer with {tspec.name}, answer again once if it "
                         "fails"], node.model_copy(update={"check": check}), None))
    return out


EDITOR = RoleSpec(name="editor", description="reviews the draft",
                  prompt=PromptWeights(task="Read the latest draft against the task. Say in one or "
                                            "two sentences what to fix, or set done to true when "
                                            "it is good."))


def _team(node: NodeSpec, spec: PipelineSpec, registry: ToolRegistry) -> list[_Raw]:
    """Roles as structure. A plain node whose outputs are free text may grow into a writer and
    an editor; a plain node may gain a checker role that runs a declared tool (arguments by
    name from its inputs and outputs) on the draft. A node with roles may lose one, or change
    its controller's policy or turn limit. Each edit keeps the other roles as they are."""
    n = node.name
    out: list[_Raw] = []
    if node.roles:
        ctrl = node.team
        for r in node.roles:
            kept = tuple(x for x in node.roles if x.name != r.name)
            finisher = ctrl.finisher if ctrl.finisher != r.name else None
            out.append(([f"{n}: remove role {r.name}"], node.model_copy(update={
                "roles": kept, "controller": ctrl.model_copy(update={"finisher": finisher})}),
                None))
        for turns in sorted({max(1, ctrl.max_turns - 2), min(32, ctrl.max_turns + 2)} -
                            {ctrl.max_turns}):
            out.append(([f"{n}: turn limit {turns}"], node.model_copy(update={
                "controller": ctrl.model_copy(update={"max_turns": turns})}), None))
        other = "model" if ctrl.policy != "model" else "order"
        out.append(([f"{n}: controller policy {other}"], node.model_copy(update={
            "controller": ctrl.model_copy(update={"policy": other})}), None))
        return out
    if node.tools or node.bind or node.arg_from or node.vote or node.check or node.reasoning:
        return out
    worker = RoleSpec(name="writer", description="writes the step's outputs", prompt=node.prompt,
                      writes=tuple(f.name for f in node.outputs))
    team = {"prompt": PromptWeights(task=node.prompt.task), "demonstrations": ()}
    if all(f.type == "str" and not f.choices for f in node.outputs):
        out.append(([f"{n}: grow into a writer and an editor (up to 4 turns)"], node.model_copy(
            update={**team, "roles": (worker, EDITOR), "controller": Controller(
                max_turns=4, finisher="editor", outputs_from="writer")}), None))
    fields = set(node.inputs) | {f.name for f in node.outputs}
    for tspec in spec.tools:
        if tspec.name not in registry.names() or registry.get(tspec.name).returns == "number":
            continue
        args = [a for a, f in registry.get(tspec.name).args_model.model_fields.items()
                if f.is_required()]
        if args and set(args) <= fields and set(args) & {f.name for f in node.outputs}:
            checker = RoleSpec(name="checker", description=f"runs {tspec.name} on the draft",
                               tool=tspec.name, args={a: a for a in args})
            out.append(([f"{n}: a writer and a checker that runs {tspec.name} on the draft (up "
                         "to 4 turns)"], node.model_copy(update={
                             **team, "roles": (worker, checker),
                             "controller": Controller(max_turns=4, finisher="checker")}), None))
    return out


def _menu(tool) -> list[tuple[str, str]]:
    """(argument, pattern) pairs worth trying on a tool's str arguments."""
    return [(arg, p) for arg in tool.str_args() for p in tool.pattern_menu(arg)]


def _wirings(tool, node: NodeSpec) -> list[tuple[str, str]]:
    """(argument, input) pairs for a call the spec can write itself: a tool with one required
    argument, filled with one of the node's inputs as it is."""
    required = [a for a, f in tool.args_model.model_fields.items() if f.is_required()]
    return [(required[0], i) for i in node.inputs] if len(required) == 1 else []


def bindable_field(field: FieldSpec) -> bool:
    """Whether an output can be bound to a tool's result: a number, or free text (a str with
    choices or a pattern is the model's to write; a tool result rarely fits either). Free text
    binds to a tool that returns text, never to one that returns a number."""
    return field.type in ("int", "float") or (field.type == "str" and not field.choices
                                                and field.pattern is None)
