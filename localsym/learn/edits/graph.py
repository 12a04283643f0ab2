"""Edits of the workflow itself (the paper's add, remove and edit of nodes and edges): a node
added after another (explicit edges rerouted through it), a node removed (its edges joined
around it), an edge connected or disconnected."""

from __future__ import annotations

from typing import Literal

from localsym.agent.node import NodeSpec
from localsym.agent.spec import PipelineSpec
from localsym.learn.edits.base import Edit, EditError, rebuilt


class AddNode(Edit):
    kind: Literal["add_node"] = "add_node"
    after: str
    node_spec: NodeSpec

    def apply(self, spec: PipelineSpec) -> PipelineSpec:
        names = [n.name for n in spec.nodes]
        if self.after not in names:
            raise EditError(f"{self.describe()}: no node {self.after!r} (nodes: {names})")
        data = spec.model_dump(mode="json")
        data["nodes"].insert(names.index(self.after) + 1, self.node_spec.model_dump(mode="json"))
        if spec.edges:
            edges = [e.model_dump() for e in spec.edges]
            outgoing = [e for e in edges if e["source"] == self.after]
            data["edges"] = [e for e in edges if e["source"] != self.after] + \
                [{"source": self.after, "target": self.node_spec.name, "when": ""}] + \
                [{**e, "source": self.node_spec.name} for e in outgoing]
        return rebuilt(spec, self, data)

    def describe(self) -> str:
        return f"add node {self.node_spec.name} after {self.after}"

    def targets(self) -> frozenset[str]:
        return frozenset({"graph", f"node:{self.node_spec.name}", f"node:{self.after}"})


class RemoveNode(Edit):
    kind: Literal["remove_node"] = "remove_node"
    name: str

    def apply(self, spec: PipelineSpec) -> PipelineSpec:
        names = [n.name for n in spec.nodes]
        if self.name not in names:
            raise EditError(f"{self.describe()}: no node {self.name!r} (nodes: {names})")
        if len(names) == 1:
            raise EditError(f"{self.describe()}: it is the only node")
        data = spec.model_dump(mode="json")
        data["nodes"] = [n for n in data["nodes"] if n["name"] != self.name]
        if spec.start == self.name:
            data["start"] = None
        if spec.edges:
            edges = [e.model_dump() for e in spec.edges]
            ins = [e["source"] for e in edges if e["target"] == self.name]
            outs = [e["target"] for e in edges if e["source"] == self.name]
            data["edges"] = [e for e in edges if self.name not in (e["source"], e["target"])] + \
                [{"source": a, "target": b, "when": ""} for a in ins for b in outs]
        return rebuilt(spec, self, data)

    def describe(self) -> str:
        return f"remove node {self.name}"

    def targets(self) -> frozenset[str]:
        return frozenset({"graph", f"node:{self.name}"})


class Rewire(Edit):
    kind: Literal["rewire"] = "rewire"
    source: str
    target: str
    connect: bool

    def apply(self, spec: PipelineSpec) -> PipelineSpec:
        edges = [e.model_dump() for e in spec.effective_edges()]
        present = any(e["source"] == self.source and e["target"] == self.target for e in edges)
        if present == self.connect:
            raise EditError(f"{self.describe()}: nothing to change")
        data = spec.model_dump(mode="json")
        data["edges"] = edges + [{"source": self.source, "target": self.target, "when": ""}] \
            if self.connect else [e for e in edges if (e["source"], e["target"]) !=
                                  (self.source, self.target)]
        return rebuilt(spec, self, data)

    def describe(self) -> str:
        return f"{'connect' if self.connect else 'disconnect'} {self.source} -> {self.target}"

    def targets(self) -> frozenset[str]:
        return frozenset({"graph"})
