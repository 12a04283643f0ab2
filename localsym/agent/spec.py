"""The agent spec: a symbolic network as data.

A ``PipelineSpec`` is the computation graph: nodes (layers) and edges. A node's weights are its
prompt components (named text fields), its demonstrations, and the tools it may use; its inputs are
fields of the example or outputs of earlier nodes; its outputs are a typed signature. Specs are
immutable pydantic values: they save to and load from JSON/YAML without loss, every optimizer
emits a new spec validated against this same schema, and a rolled-back step restores the old value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from localsym.agent.chain import check_chain
from localsym.agent.node import (  # noqa: F401
    FIELD_KINDS,
    REASONING_FIELD,
    ArgSource,
    BoundTool,
    Check,
    Controller,
    InputBinding,
    NodeSpec,
    RoleSpec,
    ToolBinding,
    Vote,
)
from localsym.agent.weights import (  # noqa: F401
    PROMPT_FIELDS,
    Demonstration,
    DemoToolCall,
    FieldSpec,
    FieldType,
    Frozen,
    PromptWeights,
    ToolSpec,
    check_pattern,
    node_param,
    tool_param,
)
from localsym.errors import ConfigError
from localsym.files import atomic_write_text, load_document, parse_document, validation_error
from localsym.text import unencodable


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
    max_steps: int | None = Field(
        None, ge=1, le=256, description="bound on node runs; required when edges form a cycle")

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

    def ends(self) -> list[NodeSpec]:
        """The nodes with no outgoing edge, in the order listed."""
        return [n for n in self.nodes if not self.successors(n.name)]

    def final_node(self) -> NodeSpec:
        """The last node with no outgoing edge: the one whose outputs are the answer."""
        return self.ends()[-1]

    def final_outputs(self) -> list[str]:
        """The answer: the outputs of the nodes with no outgoing edge."""
        return [f.name for n in self.ends() for f in n.outputs]

    # -- validation: each problem a clear error -------------------------------------------------
    @model_validator(mode="after")
    def _valid_graph(self):
        names = [n.name for n in self.nodes]
        self._check_names(names)
        reach = self._reachable()
        self._check_flow(names, reach)
        kinds = {f.name: FIELD_KINDS[f.type] for f in self.inputs}
        kinds.update({f.name: FIELD_KINDS[f.type] for n in self.nodes for f in n.outputs})
        for n in self.nodes:
            if n.program is not None:
                try:
                    n.program.check({i: kinds.get(i) for i in n.inputs}, n.tools,
                                    {f.name for f in n.outputs})
                except ValueError as err:
                    raise ValueError(f"node {n.name!r}: {err}") from None
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

    def _check_names(self, names: list[str]) -> None:
        """Every name a spec uses exists once: nodes, the start, edge ends, tools; no output
        takes an example input's name."""
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

    def _check_flow(self, names: list[str], reach: dict[str, set[str]]) -> None:
        """Every node can be reached from the start, and every input it reads is an example
        input or made by a node that can run before it."""
        unreachable = [n for n in names if n not in reach[self.start_node] | {self.start_node}]
        if unreachable:
            raise ValueError(f"nodes {unreachable} cannot be reached from the start node "
                             f"{self.start_node!r}; add edges to them or remove them")
        input_names = {f.name for f in self.inputs}
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

    def _reachable(self) -> dict[str, set[str]]:
        edges = self.effective_edges()
        reach: dict[str, set[str]] = {n.name: set() for n in self.nodes}
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
        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            text = yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False,
                                  allow_unicode=True, width=100)
        else:
            text = self.to_json() + "\n"
        atomic_write_text(path, text)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "PipelineSpec":
        if not isinstance(path, (str, Path)):
            raise ConfigError(f"{path!r} is not the path of an agent spec",
                              "give the path of a YAML or JSON spec (or a PipelineSpec)")

        return cls.from_data(load_document(path, "agent spec"), source=str(path))

    @classmethod
    def parse(cls, text: str, source: str = "spec", yaml_format: bool = False) -> "PipelineSpec":
        return cls.from_data(parse_document(text, yaml_format, f"agent spec {source}"), source)

    @classmethod
    def from_data(cls, data: Any, source: str = "spec") -> "PipelineSpec":
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise validation_error(
                err, f"invalid agent spec {source}",
                "correct the spec (see localsym.agent.spec.PipelineSpec)") from None
