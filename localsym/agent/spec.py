"""The agent spec: a symbolic network as data.

A ``PipelineSpec`` is the computation graph: nodes (layers) and edges. A node's weights are its
prompt components (named text fields), its demonstrations, and the tools it may use; its inputs are
fields of the example or outputs of earlier nodes; its outputs are a typed signature. Specs are
immutable pydantic values: they save to and load from JSON/YAML without loss, every optimizer
emits a new spec validated against this same schema, and a rolled-back step restores the old value.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Discriminator,
                      Field, Tag, ValidationError, model_validator)

from localsym.agent.glue import AnyOp, check_chain, normalize_chain
from localsym.lm.schema_index import MAX_REPEAT_STATES, repeat_states
from localsym.text import unencodable


Identifier = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
FieldType = Literal["str", "int", "float", "bool", "list[str]"]
# The trainable text fields of a node's prompt, in the order they are shown to the model.
PROMPT_FIELDS = ("role", "task", "rules", "style", "output_instructions")


def node_param(node: str, *path: str) -> str:
    """The name of a node's trainable parameter, as ``Pipeline.parameters()`` yields it and the
    optimizers, their memory and the report use it: ``nodes.N.prompt.task``,
    ``nodes.N.demonstrations``, ``nodes.N.tools`` (``node_param(N)``: the prefix ``nodes.N.``)."""
    return ".".join(("nodes", node, *path)) if path else f"nodes.{node}."


def tool_param(tool: str, field: str) -> str:
    """The name of a declared tool's trainable text: ``tools.T.description``."""
    return f"tools.{tool}.{field}"


def check_pattern(pattern: str | None, where: str) -> str | None:
    """A regex the decoder will enforce; a bad one is an error naming ``where``."""
    if pattern is None:
        return None
    try:
        re.compile(pattern)
    except re.error as err:
        raise ValueError(f"{where}: pattern {pattern!r} is not a valid regular expression "
                         f"({err})") from None
    if pattern.startswith("^") or pattern.endswith("$"):
        raise ValueError(f"{where}: pattern {pattern!r} must not be anchored with ^ or $ (the "
                         "whole value always matches it)")
    if repeat_states(pattern) > MAX_REPEAT_STATES:
        raise ValueError(f"{where}: pattern {pattern!r} repeats up to {repeat_states(pattern)} "
                         f"times (over {MAX_REPEAT_STATES}): the decoder's index would not fit in "
                         "memory; lower its {m,n} bounds or use * and +")
    return pattern


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FieldSpec(Frozen):
    """One typed field of a signature (an example input or a node output). ``choices`` makes a
    str output an enum: the decoder can produce nothing else."""

    name: str = Identifier
    type: FieldType = "str"
    description: str = ""
    choices: tuple[str, ...] = ()
    pattern: str | None = Field(None, description="a regex the whole value matches (str fields): "
                                "the decoder can produce nothing else")

    @model_validator(mode="after")
    def _choices_are_strings(self):
        if self.choices and self.type != "str":
            raise ValueError(f"field {self.name!r}: choices need type str, not {self.type}")
        if self.pattern is not None and (self.type != "str" or self.choices):
            raise ValueError(f"field {self.name!r}: a pattern needs type str without choices")
        check_pattern(self.pattern, f"field {self.name!r}")
        return self


class PromptWeights(Frozen):
    """A node's prompt components: each a named text field the optimizer may rewrite. A field may
    use the node's inputs as Jinja2 variables (``{{ question }}``)."""

    role: str = ""
    task: str = ""
    rules: str = ""
    style: str = ""
    output_instructions: str = ""


class DemoToolCall(Frozen):
    """A tool call inside a demonstration, shown as the turns the node really produces."""

    tool: str
    args: dict[str, Any]
    result: str


class Demonstration(Frozen):
    """A worked example shown to a node: its inputs, the tool calls it made (if any), and the
    outputs it should give."""

    inputs: dict[str, Any]
    outputs: dict[str, Any]
    tool_calls: tuple[DemoToolCall, ...] = ()


class ToolSpec(Frozen):
    """A tool's trainable text: what it does and how to use it. The callable itself, with its
    typed arguments, lives in the tool registry under the same name."""

    name: str = Identifier
    description: str
    usage_notes: str = ""
    patterns: dict[str, str] = Field({}, description="argument name -> a regex the argument's "
                                     "value matches (str arguments), enforced by the decoder")

    @model_validator(mode="after")
    def _valid_patterns(self):
        for arg, pattern in self.patterns.items():
            check_pattern(pattern, f"tool {self.name!r} argument {arg!r}")
        return self


def _checked_chain(chain: tuple) -> tuple:
    check_chain(chain)
    return chain


# A glue chain on a binding (``localsym.agent.glue``): typed operations, checked kind by kind.
Chain = Annotated[tuple[AnyOp, ...], BeforeValidator(normalize_chain),
                  AfterValidator(_checked_chain)]


class InputBinding(Frozen):
    """A tool argument filled from one of the node's inputs, reshaped by the glue ``via`` (e.g.
    the text after ``List:``). Written as the input's bare name when there is no glue."""

    input: str
    via: Chain = ()


class ToolBinding(Frozen):
    """An output taken from a tool's result, reshaped by the glue ``via`` (e.g. its first
    number). Written as the tool's bare name when there is no glue."""

    tool: str
    via: Chain = ()

    @model_validator(mode="after")
    def _from_text(self):
        check_chain(self.via, "text")  # a tool's result is a text
        return self


FIELD_KINDS = {"str": "text", "bool": "text", "int": "number", "float": "number",
               "list[str]": "list"}

def _bare_or_glued(value: Any) -> str:
    return "bare" if isinstance(value, str) else "glued"


# A binding's value: a bare name, or a name with glue (errors come from the form written)
ArgSource = Annotated[Union[Annotated[str, Tag("bare")], Annotated[InputBinding, Tag("glued")]],
                      Discriminator(_bare_or_glued)]
BoundTool = Annotated[Union[Annotated[str, Tag("bare")], Annotated[ToolBinding, Tag("glued")]],
                      Discriminator(_bare_or_glued)]


class Vote(Frozen):
    """Self-consistency: the node runs ``samples`` times (the first as it always does, the others
    sampled at ``temperature`` with seeds of their own) and gives the outputs most runs gave
    (a tie: the earliest)."""

    samples: int = Field(3, ge=2, le=16)
    temperature: float = Field(0.7, gt=0.0, le=2.0)


class Check(Frozen):
    """Check-and-retry: after the node answers, the declared ``tool`` is called with ``args``
    (tool argument -> one of the node's inputs or outputs); a result that is not true (or a
    call that fails) is shown to the model, which answers again, up to ``retries`` times."""

    tool: str
    args: dict[str, str] = Field(min_length=1)
    retries: int = Field(1, ge=1, le=4)


REASONING_FIELD = "reasoning"  # the free-text draft a node with ``reasoning`` writes first


class RoleSpec(Frozen):
    """One of a node's roles (the seed's agents inside an SOP state): its own prompt pieces and
    the node outputs it may write, taking turns in the node's conversation; or, with ``tool``, a
    checker that runs a declared tool on the draft (arguments from the node's inputs and the
    outputs written so far) and hands its verdict back, with no model call."""

    name: str = Identifier
    description: str = ""
    prompt: PromptWeights = PromptWeights()
    writes: tuple[str, ...] = Field((), description="the node outputs this role may write")
    tool: str | None = Field(None, description="a checker: the declared tool it runs")
    args: dict[str, str] = Field({}, description="a checker's tool argument -> one of the "
                                 "node's inputs or outputs")


class Controller(Frozen):
    """Who speaks next in a node with roles, and when the node is done: in ``order``, by
    ``rule`` (``next``: role -> the role after it), at ``random`` (seeded per example and turn),
    or chosen by the ``model`` under an enum schema and ``prompt``. The node is done when the
    ``finisher`` (default: the last role) says so, or after ``max_turns`` turns (a weight); its
    outputs are the last written (by ``outputs_from``, if named)."""

    policy: Literal["order", "rule", "random", "model"] = "order"
    next: dict[str, str] = {}
    prompt: str = ""
    max_turns: int = Field(4, ge=1, le=32)
    finisher: str | None = None
    outputs_from: str | None = None


class NodeSpec(Frozen):
    """A layer of the network."""

    name: str = Identifier
    prompt: PromptWeights = PromptWeights()
    demonstrations: tuple[Demonstration, ...] = ()
    inputs: tuple[str, ...] = ()
    outputs: tuple[FieldSpec, ...] = Field(min_length=1)
    tools: tuple[str, ...] = ()
    tool_choice: Literal["auto", "required"] = Field(
        "auto", description="required: the first step must call a tool")
    max_tool_steps: int = Field(4, ge=1, le=32)
    bind: dict[str, BoundTool] = Field(
        {}, description="output name -> tool name (or {tool, via: glue}): the output is the "
        "result of the node's last call of that tool, reshaped by the glue (deterministic, not "
        "written by the model); when every output is bound the node finishes right after the call")
    arg_from: dict[str, ArgSource] = Field(
        {}, description="'tool.argument' -> one of the node's inputs (or {input, via: glue}): "
        "the node's first step is that tool called with those inputs, reshaped by the glue, as "
        "its arguments (written by the spec, not the model); one tool")
    reasoning: int = Field(0, ge=0, le=4000, description="characters of free-text reasoning the "
                           "node writes before its outputs (a draft, then the answer under the "
                           "schema); 0: none")
    vote: Vote | None = Field(None, description="self-consistency: several runs, the majority's "
                              "outputs")
    check: Check | None = Field(None, description="check the outputs with a declared tool and "
                                "answer again when the check fails")
    roles: tuple[RoleSpec, ...] = Field((), description="several roles taking turns in a "
                                        "conversation inside the node (none: one call)")
    controller: Controller | None = Field(None, description="who speaks next among the roles, "
                                          "and when the node is done (default: in order)")

    @model_validator(mode="after")
    def _unique_outputs(self):
        names = [f.name for f in self.outputs]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"node {self.name!r} has duplicate outputs {sorted(dup)}")
        if self.reasoning and REASONING_FIELD in names:
            raise ValueError(f"node {self.name!r} has an output named {REASONING_FIELD!r}, which "
                             "its reasoning draft would shadow; rename the output or set "
                             "reasoning: 0")
        for out in self.bind:
            tool = self.bound_tool(out)
            if out not in names:
                raise ValueError(f"node {self.name!r} binds {out!r}, which is not one of its "
                                 f"outputs {names}")
            if tool not in self.tools:
                raise ValueError(f"node {self.name!r} binds {out!r} to tool {tool!r}, which the "
                                 f"node does not use (its tools: {list(self.tools)})")
        wired = {key.partition(".")[0] for key in self.arg_from}
        for key, (source, _) in self.wiring().items():
            tool, dot, arg = key.partition(".")
            if not dot or not arg or tool not in self.tools:
                raise ValueError(f"node {self.name!r} arg_from key {key!r} is not 'tool.argument' "
                                 f"of one of its tools {list(self.tools)}")
            if source not in self.inputs:
                raise ValueError(f"node {self.name!r} fills {key!r} from {source!r}, which is not "
                                 f"one of its inputs {list(self.inputs)}")
        if len(wired) > 1:
            raise ValueError(f"node {self.name!r} arg_from names several tools {sorted(wired)}: "
                             "its first step is one call")
        if self.roles:
            self._valid_roles(names)
        if self.check is not None:
            known = set(self.inputs) | set(names)
            wrong = sorted(v for v in self.check.args.values() if v not in known)
            if wrong:
                raise ValueError(f"node {self.name!r} checks with {self.check.tool!r} reading "
                                 f"{wrong}, which are not its inputs or outputs {sorted(known)}")
        return self

    def _valid_roles(self, names: list[str]) -> None:
        roles = [r.name for r in self.roles]
        twice = sorted({r for r in roles if roles.count(r) > 1})
        if twice:
            raise ValueError(f"node {self.name!r} has duplicate roles {twice}")
        if self.tools or self.bind or self.arg_from or self.vote or self.check or self.reasoning:
            raise ValueError(f"node {self.name!r} has roles and tools, bindings, a vote, a check "
                             "or a reasoning draft: give those to its roles (a checker role runs a "
                             "tool), or drop the roles")
        known = set(self.inputs) | set(names)
        for r in self.roles:
            if set(r.writes) - set(names):
                raise ValueError(f"role {r.name!r} of node {self.name!r} writes "
                                 f"{sorted(set(r.writes) - set(names))}, not outputs of the node")
            if r.tool is None and r.args:
                raise ValueError(f"role {r.name!r} has tool arguments but no tool")
            if r.tool is not None and (r.writes or not r.args or
                                       set(r.args.values()) - known):
                raise ValueError(f"checker role {r.name!r} of node {self.name!r} needs args "
                                 f"from {sorted(known)} and writes nothing")
        unwritten = sorted(set(names) - {w for r in self.roles for w in r.writes})
        if unwritten:
            raise ValueError(f"no role of node {self.name!r} writes {unwritten}; give those "
                             "outputs to a role (writes: [...])")
        ctrl = self.controller or Controller()
        named = [v for v in (ctrl.finisher, ctrl.outputs_from) if v is not None] + \
            list(ctrl.next) + list(ctrl.next.values())
        if set(named) - set(roles):
            raise ValueError(f"node {self.name!r}'s controller names {sorted(set(named) - set(roles))}, "
                             f"which are not its roles {roles}")

    @property
    def team(self) -> "Controller":
        """The node's controller (the default one where the spec names none)."""
        return self.controller or Controller()

    def bound_tool(self, output: str) -> str | None:
        """The tool whose result ``output`` is bound to, or None."""
        binding = self.bind.get(output)
        return binding if isinstance(binding, str) or binding is None else binding.tool

    def bound_via(self, output: str) -> tuple:
        """The glue between the bound tool's result and ``output`` (``()``: none)."""
        binding = self.bind.get(output)
        return () if isinstance(binding, str) or binding is None else binding.via

    def wiring(self) -> dict[str, tuple[str, tuple]]:
        """The written first call's arguments: ``'tool.argument' -> (input, glue)``."""
        return {key: (b, ()) if isinstance(b, str) else (b.input, b.via)
                for key, b in self.arg_from.items()}

    @property
    def call_tool(self) -> str | None:
        """The tool of the first call the spec writes (``arg_from``), or None."""
        return next(iter(self.arg_from)).partition(".")[0] if self.arg_from else None


class EdgeSpec(Frozen):
    """source -> target. When a node has several outgoing edges it chooses one (conditional
    routing) from an enum of their targets; ``when`` tells it when to take this edge."""

    source: str
    target: str
    when: str = ""


class PipelineSpec(Frozen):
    """The computation graph. With no edges, the nodes run in the order listed."""

    name: str = "agent"
    description: str = Field("", description="the task, as told to the nodes and the judge")
    inputs: tuple[FieldSpec, ...] = Field(min_length=1)
    nodes: tuple[NodeSpec, ...] = Field(min_length=1)
    edges: tuple[EdgeSpec, ...] = ()
    tools: tuple[ToolSpec, ...] = ()
    start: str | None = None
    max_steps: int | None = Field(None, ge=1, le=256,
                                  description="bound on node runs; required when edges form a cycle")

    # -- the graph ------------------------------------------------------------------------------
    def replace(self, node: NodeSpec, tools: dict | None = None) -> "PipelineSpec":
        """This spec with ``node`` in place of the node of its name (and ``tools``, name ->
        ToolSpec, in place of those declared tools); a ConfigError if that is not valid."""
        data = self.model_dump(mode="json")
        data["nodes"] = [node.model_dump(mode="json") if n["name"] == node.name else n
                         for n in data["nodes"]]
        if tools:
            data["tools"] = [tools[t["name"]].model_dump(mode="json") if t["name"] in tools
                             else t for t in data["tools"]]
        return PipelineSpec.from_data(data, source=f"edit of {node.name}")

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def tool(self, name: str) -> ToolSpec:
        for t in self.tools:
            if t.name == name:
                return t
        raise KeyError(name)

    @property
    def start_node(self) -> str:
        return self.start or self.nodes[0].name

    def effective_edges(self) -> tuple[EdgeSpec, ...]:
        if self.edges:
            return self.edges
        return tuple(EdgeSpec(source=a.name, target=b.name)
                     for a, b in zip(self.nodes, self.nodes[1:]))

    def successors(self, name: str) -> list[EdgeSpec]:
        return [e for e in self.effective_edges() if e.source == name]

    def producers(self) -> dict[str, str]:
        """output field -> the node producing it (inputs of the example map to '')."""
        out = {f.name: "" for f in self.inputs}
        for n in self.nodes:
            for f in n.outputs:
                out.setdefault(f.name, n.name)
        return out

    def final_outputs(self) -> list[str]:
        """The answer: the outputs of the nodes with no outgoing edge."""
        ends = [n for n in self.nodes if not self.successors(n.name)]
        return [f.name for n in ends for f in n.outputs]

    # -- validation: each problem a clear error -------------------------------------------------
    @model_validator(mode="after")
    def _valid_graph(self):
        names = [n.name for n in self.nodes]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate node names {dup}")
        known = set(names)
        if self.start is not None and self.start not in known:
            raise ValueError(f"start node {self.start!r} is not a node (nodes: {names})")
        for e in self.edges:
            for end in (e.source, e.target):
                if end not in known:
                    raise ValueError(f"edge {e.source} -> {e.target} names unknown node {end!r} "
                                     f"(nodes: {names})")
        tool_names = {t.name for t in self.tools}
        for n in self.nodes:
            for t in n.tools + ((n.check.tool,) if n.check else ()) + \
                    tuple(r.tool for r in n.roles if r.tool):
                if t not in tool_names:
                    raise ValueError(f"node {n.name!r} uses tool {t!r}, which is not declared "
                                     f"in tools (declared: {sorted(tool_names)})")
        input_names = {f.name for f in self.inputs}
        for n in self.nodes:
            clash = input_names & {f.name for f in n.outputs}
            if clash:
                raise ValueError(f"node {n.name!r} outputs {sorted(clash)}, which are example "
                                 "inputs; give the outputs other names")
        reach = self._reachable()
        unreachable = [n for n in names if n not in reach[self.start_node] | {self.start_node}]
        if unreachable:
            raise ValueError(f"nodes {unreachable} cannot be reached from the start node "
                             f"{self.start_node!r}; add edges to them or remove them")
        # every input must be produced by the example or by a node that can run before this one
        for n in self.nodes:
            before = {m for m in names if n.name in reach[m]}
            for inp in n.inputs:
                if inp in input_names:
                    continue
                makers = [m.name for m in self.nodes if inp in {f.name for f in m.outputs}]
                if not makers:
                    raise ValueError(f"node {n.name!r} reads {inp!r}, which neither the example "
                                     f"inputs {sorted(input_names)} nor any node produces")
                if not any(m in before for m in makers):
                    raise ValueError(f"node {n.name!r} reads {inp!r}, but the node producing it "
                                     f"({', '.join(makers)}) never runs before it")
        kinds = {f.name: FIELD_KINDS[f.type] for f in self.inputs}
        kinds.update({f.name: FIELD_KINDS[f.type] for n in self.nodes for f in n.outputs})
        for n in self.nodes:
            for key, (source, via) in n.wiring().items():
                try:
                    check_chain(via, kinds.get(source))
                except ValueError as err:
                    raise ValueError(f"node {n.name!r} fills {key!r} from {source!r}: {err}") \
                        from None
        bad = unencodable(self.model_dump(mode="python"))
        if bad:
            raise ValueError(f"the spec's text at {bad} holds a lone surrogate (not valid "
                             "Unicode); write it as UTF-8 text")
        cyclic = [m for m in names if m in reach[m]]
        if cyclic and self.max_steps is None:
            raise ValueError(f"the edges form a cycle through {cyclic} without a bound; set "
                             "max_steps to bound the number of node runs")
        if all(self.successors(n) for n in names):
            raise ValueError("every node has an outgoing edge, so no node gives the answer; "
                             "leave at least one node without outgoing edges (the last)")
        return self

    def _reachable(self) -> dict[str, set[str]]:
        edges = self.effective_edges()
        reach = {n.name: set() for n in self.nodes}
        for name in reach:
            stack = [e.target for e in edges if e.source == name]
            while stack:
                m = stack.pop()
                if m not in reach[name]:
                    reach[name].add(m)
                    stack.extend(e.target for e in edges if e.source == m)
        return reach

    # -- persistence ----------------------------------------------------------------------------
    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def save(self, path: str | Path) -> Path:
        """Write the spec as JSON or YAML (by the file's suffix), atomically."""
        from localsym.files import atomic_write_text

        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False,
                                  allow_unicode=True, width=100)
        else:
            text = self.to_json() + "\n"
        atomic_write_text(path, text)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "PipelineSpec":
        from localsym.errors import ConfigError
        from localsym.files import load_document

        if not isinstance(path, (str, Path)):
            raise ConfigError(f"{path!r} is not the path of an agent spec",
                              "give the path of a YAML or JSON spec (or a PipelineSpec)")

        return cls.from_data(load_document(path, "agent spec"), source=str(path))

    @classmethod
    def parse(cls, text: str, source: str = "spec", yaml_format: bool = False) -> "PipelineSpec":
        from localsym.files import parse_document

        return cls.from_data(parse_document(text, yaml_format, f"agent spec {source}"), source)

    @classmethod
    def from_data(cls, data: Any, source: str = "spec") -> "PipelineSpec":
        from localsym.files import validation_error

        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise validation_error(err, f"invalid agent spec {source}",
                                   "correct the spec (see localsym.agent.spec.PipelineSpec)") from None
