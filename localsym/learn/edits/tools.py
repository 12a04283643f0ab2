"""Edits of a node's tools and of a declared tool: attach and detach, the tool choice, the call
the spec writes first (its arguments through glue), outputs bound to a result (through glue),
argument patterns, and a tool's text."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from localsym.agent.chain import describe as describe_chain
from localsym.agent.node import ArgSource, BoundTool, NodeSpec
from localsym.agent.spec import PipelineSpec
from localsym.agent.weights import tool_param
from localsym.learn.edits.base import Edit, bounded_text, find_tool, on_node, rebuilt


def glued(source: str, via: tuple) -> str:
    """A value's source and its glue as a person reads them: ``question | after(':')``."""
    return " | ".join([source] + ([describe_chain(via)] if via else []))


def source_text(binding: ArgSource | BoundTool) -> str:
    """A binding (a bare name, or a name with glue) as a person reads it."""
    if isinstance(binding, str):
        return binding
    name = getattr(binding, "input", None) or getattr(binding, "tool")
    return glued(name, binding.via)


class AttachTool(Edit):
    """Give a node a declared tool it may call."""

    kind: Literal["attach_tool"] = "attach_tool"
    node: str
    tool: str

    def apply(self, spec: PipelineSpec) -> PipelineSpec:
        find_tool(spec, self.tool, self.describe())
        return on_node(spec, self, lambda n: {"tools": n.tools + ((self.tool,) if self.tool
                                                                  not in n.tools else ())})

    def describe(self) -> str:
        return f"attach tool {self.tool} to {self.node}"


class DetachTool(Edit):
    """Take a tool from a node, with the outputs bound to it and the call written for it."""

    kind: Literal["detach_tool"] = "detach_tool"
    node: str
    tool: str

    def apply(self, spec: PipelineSpec) -> PipelineSpec:
        t = self.tool
        return on_node(spec, self, lambda n: {
            "tools": tuple(x for x in n.tools if x != t),
            "bind": {k: v for k, v in n.bind.items() if n.bound_tool(k) != t},
            "arg_from": {} if n.call_tool == t else n.arg_from})

    def describe(self) -> str:
        return f"detach tool {self.tool} from {self.node}"


class SetToolChoice(Edit):
    """Whether a node's first step must call a tool."""

    kind: Literal["tool_choice"] = "tool_choice"
    node: str
    choice: Literal["auto", "required"]

    def apply(self, spec: PipelineSpec) -> PipelineSpec:
        return on_node(spec, self, lambda n: {"tool_choice": self.choice})

    def describe(self) -> str:
        return f"require a tool call first in {self.node}" if self.choice == "required" else \
            f"tool_choice auto in {self.node}"


class WriteCall(Edit):
    """The node's first step is this tool (one the node has) called with these arguments (each
    an input of the node, through its glue), written by the spec, not the model."""

    kind: Literal["write_call"] = "write_call"
    node: str
    tool: str
    args: dict[str, ArgSource] = Field(min_length=1)

    def apply(self, spec: PipelineSpec) -> PipelineSpec:
        return on_node(spec, self, lambda n: {
            "arg_from": {f"{self.tool}.{a}": s for a, s in self.args.items()}})

    def describe(self) -> str:
        return f"call {self.tool} first with " + ", ".join(
            f"{a} = {source_text(s)}" for a, s in self.args.items())


class DropCall(Edit):
    """The node no longer writes its first call: the model makes it."""

    kind: Literal["drop_call"] = "drop_call"
    node: str
    tool: str

    def apply(self, spec: PipelineSpec) -> PipelineSpec:
        return on_node(spec, self, lambda n: {"arg_from": {}})

    def describe(self) -> str:
        return f"{self.node}: drop the written call of {self.tool}"


class BindOutput(Edit):
    """An output taken from the result of the node's last call of a tool, through its glue."""

    kind: Literal["bind_output"] = "bind_output"
    node: str
    output: str
    binding: BoundTool

    def apply(self, spec: PipelineSpec) -> PipelineSpec:
        return on_node(spec, self, lambda n: {"bind": {**n.bind, self.output: self.binding}})

    def describe(self) -> str:
        tool = self.binding if isinstance(self.binding, str) else self.binding.tool
        via = () if isinstance(self.binding, str) else self.binding.via
        return f"bind {self.node}.{self.output} to the result of {glued(tool, via)}"


class UnbindOutput(Edit):
    """The model writes the output again."""

    kind: Literal["unbind_output"] = "unbind_output"
    node: str
    output: str

    def apply(self, spec: PipelineSpec) -> PipelineSpec:
        return on_node(spec, self, lambda n: {"bind": {k: v for k, v in n.bind.items()
                                                       if k != self.output}})

    def describe(self) -> str:
        return f"unbind {self.node}.{self.output}"


class SetArgPattern(Edit):
    """A regex a declared tool's str argument is forced into by the decoder (None: none)."""

    kind: Literal["arg_pattern"] = "arg_pattern"
    tool: str
    arg: str
    pattern: str | None

    def apply(self, spec: PipelineSpec) -> PipelineSpec:
        t = find_tool(spec, self.tool, self.describe())
        patterns = {a: p for a, p in t.patterns.items() if a != self.arg}
        if self.pattern is not None:
            patterns = {**t.patterns, self.arg: self.pattern}
        return _with_tool(spec, self, {**t.model_dump(mode="json"), "patterns": patterns})

    def describe(self) -> str:
        what = f"tool {self.tool} argument {self.arg}"
        return f"{what} pattern {self.pattern}" if self.pattern is not None else \
            f"{what}: drop the pattern"

    def targets(self) -> frozenset[str]:
        return frozenset({f"tool:{self.tool}"})


class SetToolText(Edit):
    """A declared tool's description or usage notes, rewritten."""

    kind: Literal["tool_text"] = "tool_text"
    tool: str
    field: Literal["description", "usage_notes"]
    text: str

    def apply(self, spec: PipelineSpec) -> PipelineSpec:
        bounded_text(self, self.text)
        t = find_tool(spec, self.tool, self.describe())
        return _with_tool(spec, self, {**t.model_dump(mode="json"), self.field: self.text})

    def describe(self) -> str:
        return tool_param(self.tool, self.field)

    def targets(self) -> frozenset[str]:
        return frozenset({f"tool:{self.tool}"})


def _with_tool(spec: PipelineSpec, edit: Edit, tool: dict) -> PipelineSpec:
    data = spec.model_dump(mode="json")
    data["tools"] = [tool if t["name"] == tool["name"] else t for t in data["tools"]]
    return rebuilt(spec, edit, data)


def attached(node: NodeSpec, tool: str) -> list[Edit]:
    """The edit that attaches ``tool`` to ``node``, if it lacks it."""
    return [] if tool in node.tools else [AttachTool(node=node.name, tool=tool)]
