"""What every edit is: a frozen, typed change of an agent spec with a target, a pure ``apply``
and a ``describe``; and the one way an edit reaches a node (``on_node``)."""

from __future__ import annotations

from typing import Any, Callable

from pydantic import BaseModel, ConfigDict

from localsym.agent.node import NodeSpec
from localsym.agent.spec import PipelineSpec
from localsym.agent.weights import ToolSpec
from localsym.errors import ConfigError


MAX_TEXT = 2000  # characters in one prompt piece or tool text


class EditError(ConfigError):
    """An edit that cannot apply to this spec (its target is missing, or the spec it would make is
    not valid): the candidate carrying it is left out, with this reason."""

    def __init__(self, cause: str):
        super().__init__(cause, "")


class Edit(BaseModel):
    """One kind of change of a spec. Subclasses set ``kind`` (the discriminator, as the run's log
    writes it) and implement ``apply`` (pure: a new, validated spec, or an EditError) and
    ``describe`` (one line, as a person reads it in the report and the optimizers' memory)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def apply(self, spec: PipelineSpec) -> PipelineSpec:  # pragma: no cover - every kind has one
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - every kind has one
        raise NotImplementedError

    def targets(self) -> frozenset[str]:
        """What it touches (``node:N``, ``tool:T``, ``graph``): two edits whose targets do not
        collide may be applied in either order."""
        node = getattr(self, "node", None)
        return frozenset({f"node:{node}"}) if node else frozenset()


def find_node(spec: PipelineSpec, name: str, what: str) -> NodeSpec:
    try:
        return spec.node(name)
    except KeyError:
        raise EditError(f"{what}: no node {name!r} (nodes: {[n.name for n in spec.nodes]})") \
            from None


def find_tool(spec: PipelineSpec, name: str, what: str) -> ToolSpec:
    try:
        return spec.tool(name)
    except KeyError:
        raise EditError(f"{what}: no declared tool {name!r} "
                        f"(declared: {[t.name for t in spec.tools]})") from None


def on_node(spec: PipelineSpec, edit: Edit, change: Callable[[NodeSpec], dict[str, Any]],
            tools: dict[str, ToolSpec] | None = None) -> PipelineSpec:
    """``spec`` with ``edit.node`` updated by the fields ``change(node)`` returns (and ``tools``
    in place of those declared tools), validated as a whole; an EditError names why not."""
    node = find_node(spec, edit.node, edit.describe())  # type: ignore[attr-defined]
    try:
        return spec.replace(node.model_copy(update=change(node)), tools)
    except ConfigError as err:
        raise EditError(f"{edit.describe()}: {err.cause}") from None


def rebuilt(spec: PipelineSpec, edit: Edit, data: dict) -> PipelineSpec:
    """A spec from ``data`` (a changed dump of ``spec``), validated; an EditError names why not."""
    try:
        return PipelineSpec.from_data(data, source=f"the result of {edit.describe()!r}")
    except ConfigError as err:
        raise EditError(f"{edit.describe()}: {err.cause}") from None


def bounded_text(edit: Edit, text: str) -> None:
    """An EditError when ``text`` is over MAX_TEXT characters."""
    if len(text) > MAX_TEXT:
        raise EditError(f"{edit.describe()}: the text is {len(text)} characters (limit "
                        f"{MAX_TEXT})")
