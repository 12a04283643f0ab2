"""Two candidates' edits together (GEPA's merge), when their targets do not collide."""

from __future__ import annotations

from localsym.agent.spec import PipelineSpec
from localsym.learn.edits import Edit, EditError, apply_edits, collide


def merge(parent: PipelineSpec, a: list[Edit], b: list[Edit]) -> PipelineSpec | None:
    """The spec of ``a``'s edits and ``b``'s together on ``parent``, when no node, tool or the
    graph is touched by both (GEPA's merge); None when they collide, when the result is not a
    valid spec, or when it is one of the two or the parent."""
    if not a or not b or collide(a, b):
        return None
    try:
        merged = apply_edits(parent, a + b)
    except EditError:
        return None
    if merged == parent or merged in (apply_edits(parent, a), apply_edits(parent, b)):
        return None
    return merged
