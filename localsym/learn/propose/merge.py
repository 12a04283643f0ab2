"""Two candidates' edits together (GEPA's merge), when they touch different nodes and tools."""

from __future__ import annotations

from localsym.agent.spec import PipelineSpec
from localsym.learn.propose.structure import build


def _workflow(data: dict) -> tuple:
    return ([n["name"] for n in data["nodes"]], data["edges"], data["start"], data["max_steps"])


def merge(parent: PipelineSpec, a: PipelineSpec, b: PipelineSpec) -> PipelineSpec | None:
    """The edits of ``a`` and of ``b`` (both children of ``parent``) together, when they touch
    different nodes and tools (GEPA's merge); None when they conflict or the result is invalid."""
    p, x, y = (s.model_dump(mode="json") for s in (parent, a, b))
    if _workflow(x) != _workflow(p) and _workflow(y) != _workflow(p):
        return None
    base, other = (y, x) if _workflow(y) != _workflow(p) else (x, y)
    if {k: v for k, v in other.items() if k not in ("nodes", "tools")} != \
            {k: v for k, v in p.items() if k not in ("nodes", "tools")}:
        return None
    for part in ("nodes", "tools"):
        before = {e["name"]: e for e in p[part]}
        mine = {e["name"]: i for i, e in enumerate(base[part])}
        for entry in other[part]:
            if entry == before.get(entry["name"]):
                continue
            i = mine.get(entry["name"])
            if i is None or base[part][i] != before.get(entry["name"]):
                return None  # both changed it, or it is gone from the other
            base[part][i] = entry
    merged = build(base, "merge")
    return merged if merged not in (None, parent, a, b) else None
