"""Structural edits that code lists from the spec and the tool registry, with no LLM: attach a
declared tool (alone, required, with a vetted argument pattern, with an output bound to its
result, called first with an input), detach it, flip tool_choice, set or drop a pattern, bind
or unbind an output, write or drop the first call, a bounded pattern on a free text output,
test-time compute (a reasoning draft, a vote, a check), roles (grow a team, remove a role, a
turn limit, a policy), remove a node.

Each candidate is one typed edit or one coherent group of them (``localsym.learn.edits``),
applied to the parent and validated by the same schema as any spec; a group whose result is not
a valid spec is left out. The search screens every candidate on data, so a listed edit that
does not help costs screening time, never correctness.
"""

from __future__ import annotations

from itertools import zip_longest

from localsym.agent.node import REASONING_FIELD, Check, Controller, NodeSpec, RoleSpec, Vote
from localsym.agent.spec import PipelineSpec
from localsym.agent.tools import ToolRegistry
from localsym.agent.weights import FieldSpec, PromptWeights, ToolSpec
from localsym.learn.edits import (AttachTool, BindOutput, DetachTool, DropCall, Edit, GrowTeam,
                                  RemoveNode, RemoveRole, SetArgPattern, SetCheck, SetController,
                                  SetOutputPattern, SetReasoning, SetToolChoice, SetVote,
                                  UnbindOutput, WriteCall)
from localsym.learn.propose.children import Child, children

GENERIC_OUTPUT_PATTERNS = (r'[^"\\\n]{1,40}',)
Group = list[Edit]


def structural_edits(spec: PipelineSpec, registry: ToolRegistry) -> list[Child]:
    """Every structural edit the spec and the tool registry allow, each one atomic or one
    coherent group (see the module doc), listed in a fixed order (the nodes taking turns, so a
    step's cut of candidates reaches every node), so a run is reproducible."""
    declared = [t for t in spec.tools if t.name in registry.names()]
    per_node: list[list[Child]] = []
    for node in spec.nodes:
        groups: list[Group] = []
        fields = [f for f in node.outputs if bindable_field(f)]
        for tspec in declared if not node.roles else ():  # a team: only its own edits
            tool = registry.get(tspec.name)
            bindable = [f.name for f in fields if tool.returns != "bool" and
                        (f.type != "str" or tool.returns == "text")]
            edits = _attach if tspec.name not in node.tools else _attached
            groups += edits(node, tspec, tool, bindable)
        groups += _team(node, spec, registry) if node.roles else \
            _output_patterns(node) + _test_time(node, spec, registry) + _team(node, spec, registry)
        per_node.append(children(spec, groups))
    out = [c for turn in zip_longest(*per_node) for c in turn if c is not None]
    if len(spec.nodes) > 1:
        out += children(spec, [[RemoveNode(name=n.name)] for n in spec.nodes])
    return out


def _attach(node: NodeSpec, tspec: ToolSpec, tool, bindable: list[str]) -> list[Group]:
    """The groups that give ``node`` the declared tool it lacks; those binding an output to the
    tool's result first (a step screens a cut of the candidates)."""
    t, n = tspec.name, node.name
    attach, require = AttachTool(node=n, tool=t), SetToolChoice(node=n, choice="required")
    binds = [BindOutput(node=n, output=f, binding=t) for f in bindable]
    out: list[Group] = [[attach], [attach, require]]
    for arg, p in _menu(tool):
        group: Group = [attach, require, SetArgPattern(tool=t, arg=arg, pattern=p)]
        out += [group] + [group + [b] for b in binds]
    out += [[attach, require, b] for b in binds]
    for arg, source in _wirings(tool, node):
        group = [attach, WriteCall(node=n, tool=t, args={arg: source})]
        out += [group] + [group + [b] for b in binds]
    return sorted(out, key=lambda g: not any(isinstance(e, BindOutput) for e in g))


def _attached(node: NodeSpec, tspec: ToolSpec, tool, bindable: list[str]) -> list[Group]:
    """The edits of a tool ``node`` already has: drop or write its first call, detach it, flip
    ``tool_choice``, set or drop an argument pattern, bind or unbind an output."""
    t, n = tspec.name, node.name
    out: list[Group] = []
    if node.call_tool == t:
        out.append([DropCall(node=n, tool=t)])
    elif not node.arg_from:
        out += [[WriteCall(node=n, tool=t, args={arg: source})]
                for arg, source in _wirings(tool, node)]
    out.append([DetachTool(node=n, tool=t)])
    out.append([SetToolChoice(node=n, choice="auto" if node.tool_choice == "required"
                              else "required")])
    out += [[SetArgPattern(tool=t, arg=arg, pattern=p)] for arg, p in _menu(tool)
            if tspec.patterns.get(arg) != p]
    out += [[SetArgPattern(tool=t, arg=arg, pattern=None)] for arg in tspec.patterns]
    out += [[UnbindOutput(node=n, output=f)] if node.bound_tool(f) == t else
            [BindOutput(node=n, output=f, binding=t)] for f in bindable]
    return out


def _output_patterns(node: NodeSpec) -> list[Group]:
    """A bounded pattern on each free str output (a tiny model's free string can run on)."""
    return [[SetOutputPattern(node=node.name, output=f.name, pattern=p)]
            for f in node.outputs if f.type == "str" and not f.choices and f.pattern is None
            for p in GENERIC_OUTPUT_PATTERNS]


REASONING_CHARS = 160  # the draft a reasoning candidate allows (about 40 tokens)
VOTE = Vote(samples=3)


def _test_time(node: NodeSpec, spec: PipelineSpec, registry: ToolRegistry) -> list[Group]:
    """Test-time compute as structure, each costing model calls per example (screened and gated
    like the rest: a tie never buys cost): a free-text draft before the answer, self-consistency
    over a few sampled runs, check-and-retry with a declared tool that returns a bool and whose
    arguments are the node's inputs or outputs by name."""
    n = node.name
    out: list[Group] = []
    if node.reasoning:
        out.append([SetReasoning(node=n, chars=0)])
    elif REASONING_FIELD not in {f.name for f in node.outputs}:
        out.append([SetReasoning(node=n, chars=REASONING_CHARS)])
    out.append([SetVote(node=n, vote=None if node.vote else VOTE)])
    if node.check is not None:
        return out + [[SetCheck(node=n, check=None, tool=node.check.tool)]]
    fields = set(node.inputs) | {f.name for f in node.outputs}
    for tspec in spec.tools:
        if tspec.name not in registry.names() or registry.get(tspec.name).returns != "bool":
            continue
        args = list(registry.get(tspec.name).args_model.model_fields)
        if args and set(args) <= fields and set(args) & {f.name for f in node.outputs}:
            out.append([SetCheck(node=n, check=Check(tool=tspec.name,
                                                     args={a: a for a in args}))])
    return out


EDITOR = RoleSpec(name="editor", description="reviews the draft",
                  prompt=PromptWeights(task="Read the latest draft against the task. Say in one or "
                                            "two sentences what to fix, or set done to true when "
                                            "it is good."))


def _team(node: NodeSpec, spec: PipelineSpec, registry: ToolRegistry) -> list[Group]:
    """Roles as structure. A plain node whose outputs are free text may grow into a writer and
    an editor; a plain node may gain a checker role that runs a declared tool (arguments by
    name from its inputs and outputs) on the draft. A node with roles may lose one, or change
    its controller's policy or turn limit. Each edit keeps the other roles as they are."""
    n = node.name
    if node.roles:
        ctrl = node.team
        turns = sorted({max(1, ctrl.max_turns - 2), min(32, ctrl.max_turns + 2)} -
                       {ctrl.max_turns})
        removals: list[Group] = [[RemoveRole(node=n, role=r.name)] for r in node.roles]
        return removals + [[SetController(node=n, max_turns=k)] for k in turns] + \
            [[SetController(node=n, policy="model" if ctrl.policy != "model" else "order")]]
    if node.tools or node.bind or node.arg_from or node.vote or node.check or node.reasoning:
        return []
    out: list[Group] = []
    worker = RoleSpec(name="writer", description="writes the step's outputs", prompt=node.prompt,
                      writes=tuple(f.name for f in node.outputs))
    if all(f.type == "str" and not f.choices for f in node.outputs):
        out.append([GrowTeam(node=n, roles=(worker, EDITOR), controller=Controller(
            max_turns=4, finisher="editor", outputs_from="writer"))])
    fields = set(node.inputs) | {f.name for f in node.outputs}
    for tspec in spec.tools:
        if tspec.name not in registry.names() or registry.get(tspec.name).returns == "number":
            continue
        args = [a for a, f in registry.get(tspec.name).args_model.model_fields.items()
                if f.is_required()]
        if args and set(args) <= fields and set(args) & {f.name for f in node.outputs}:
            checker = RoleSpec(name="checker", description=f"runs {tspec.name} on the draft",
                               tool=tspec.name, args={a: a for a in args})
            out.append([GrowTeam(node=n, roles=(worker, checker),
                                 controller=Controller(max_turns=4, finisher="checker"))])
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
