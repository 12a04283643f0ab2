"""Programs found from the data, without the model: the synthesis engine
(``localsym.learn.synth``) run over every node whose outputs the training examples give, each
program it offers a candidate (the tools it calls attached, the program set), screened and
gated like every other. Its tool results are memoized across steps (``ToolMemo``), and a
search that the data has already answered is not run again."""

from __future__ import annotations

import hashlib
import json

from localsym.agent.node import FIELD_KINDS
from localsym.agent.spec import PipelineSpec
from localsym.agent.tools import ToolRegistry
from localsym.data import Example
from localsym.learn.edits import AttachTool, Edit, SetProgram
from localsym.learn.propose.children import Child, children
from localsym.learn.synth.engine import Engine, Found, SynthStats, ToolMemo
from localsym.learn.synth.limits import SynthLimits
from localsym.metrics import Metric


def glue_edits(spec: PipelineSpec, registry: ToolRegistry, examples: list[Example],
               metric: Metric | None, memo: ToolMemo | None = None,
               limits: SynthLimits = SynthLimits(), known: dict[str, float] | None = None,
               unlabeled: list[dict] | None = None) -> tuple[list[Child], SynthStats]:
    """The best ``limits.keep`` programs for ``spec``'s nodes found on ``examples`` (``known``:
    the parent's scores on some of them, a program must beat it there; ``unlabeled``: inputs
    with no answer, which rank the programs), best first; and what the search looked at."""
    memo = memo if memo is not None else ToolMemo()
    engine = Engine(registry, metric, limits, memo)  # type: ignore[arg-type]
    rows = [ex for ex in examples if ex.expected][:limits.examples]
    if metric is None or getattr(metric, "__name__", "") == "humaneval" or not rows:
        return [], engine.stats  # a judge, or tests in a sandbox: no data to search on
    tools = [t.name for t in spec.tools if t.name in registry.names()]
    kinds = {f.name: FIELD_KINDS[f.type] for f in spec.inputs} | \
        {f.name: FIELD_KINDS[f.type] for n in spec.nodes for f in n.outputs}
    found: list[Found] = []
    for node in spec.nodes:
        if node.roles:  # a team's tools belong to its checker roles
            continue
        # what the search depends on: the node's inputs and outputs, the tools, the rows (a
        # prompt edit or a new parent does not search again; the parent is compared after)
        key = hashlib.sha256(json.dumps([node.name, list(node.inputs),
                                         [f.model_dump(mode="json") for f in node.outputs],
                                         tools, [ex.id for ex in rows], unlabeled or []],
                                        sort_keys=True, default=str).encode()).hexdigest()
        if key not in memo.found:
            memo.found[key] = engine.found(node, tools, rows, unlabeled, kinds)
        found += [f for f in memo.found[key] if f.beats(known or {})]
    found.sort(key=lambda f: f.rank())
    out: list[Child] = []
    for f in found:
        if len(out) >= limits.keep:
            break
        node = spec.node(f.node)
        if node.program == f.program:
            continue
        edits: list[Edit] = [AttachTool(node=node.name, tool=t) for t in f.program.tools()
                             if t not in node.tools]
        note = f"program found on {len(f.scores)} training examples: " \
               f"{sum(f.scores) / max(1, len(f.scores)):.2f}" + \
               (f", {sum(f.held) / len(f.held):.2f} on {len(f.held)} held back" if f.held else "")
        made = children(spec, [edits + [SetProgram(node=node.name, program=f.program)]], note)
        out += [c for c in made if all(c.spec != o.spec for o in out)]
    return out, engine.stats
