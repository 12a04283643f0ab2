"""Glue found from the data, without the model.

For each declared tool and each node that reads example inputs, the glue chains worth trying are
induced from the training inputs themselves (a prefix or suffix every input shares, a delimiter
every input holds, the numbers or words of a text, one cut after another), the tool is run alone
on the training examples with each chain's argument, and the tool's results are reshaped by the
output chains induced from them (a trim, a case, a parse, a re-join, a small table when the
results take a few values) and scored against the expected outputs with the run's metric. The
best few (a written first call with its glue, the answer bound to the result through its glue)
become structural candidates, screened and gated like every other. No LLM call is made here.

Everything is bounded: the chains tried per argument, the argument combinations of a tool, the
distinct tool calls (memoized across steps), and a tool that times out is given up on.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from localsym.agent.chain import run as run_chain
from localsym.agent.bindings import coerce
from localsym.agent.glue import GlueError
from localsym.agent.node import InputBinding, NodeSpec, ToolBinding
from localsym.agent.spec import PipelineSpec
from localsym.agent.tools import ToolRegistry
from localsym.data import Example
from localsym.learn.edits import BindOutput, Edit, WriteCall, attached
from localsym.learn.propose.chains import arg_chains, complexity, output_chains
from localsym.learn.propose.children import Child, children
from localsym.metrics import Metric, score

MAX_EXAMPLES = 32  # training examples the chains are induced and scored on
MAX_CHAINS = 400  # argument chains tried per argument (the simplest first)
MAX_COMBOS = 64  # argument combinations tried per tool with several arguments
PROBE = 4  # examples a combination is tried on first; it goes on only if one of them scores
MAX_TOOL_CALLS = 4000  # distinct tool calls per enumeration
KEEP = 3  # candidates returned


@dataclass(frozen=True)
class Found:
    """A glue the data supports: the written call's arguments, the bound output, its score."""

    node: str
    tool: str
    wiring: tuple[tuple[str, str, tuple], ...]  # (argument, input, chain)
    output: str | None
    out_via: tuple
    score: float
    complexity: int
    predictions: tuple = ()  # what it answers on each example


@dataclass
class ToolMemo:
    """Tool results by (tool, arguments), kept across steps, and tools given up on."""

    results: dict[str, str | None] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)
    calls: int = 0


def glue_edits(spec: PipelineSpec, registry: ToolRegistry, examples: list[Example],
               metric: Metric | None, memo: ToolMemo | None = None, keep: int = KEEP
               ) -> list[Child]:
    """The best ``keep`` glue candidates for ``spec`` found on ``examples`` (see the module
    doc), best first."""
    rows = [ex for ex in examples if ex.expected][:MAX_EXAMPLES]
    if metric is None or not rows:
        return []
    memo = memo if memo is not None else ToolMemo()
    memo.calls = 0
    names = {f.name for f in spec.inputs}
    found: list[Found] = []
    for node in spec.nodes:
        if node.roles:  # a team's tools belong to its checker roles
            continue
        sources = [i for i in node.inputs if i in names]
        wanted = [f for f in node.outputs if any(f.name in (ex.expected or {}) for ex in rows)]
        if not sources or not wanted:
            continue
        for tspec in spec.tools:
            if tspec.name in registry.names() and tspec.name not in memo.broken:
                found += _for_tool(node, tspec.name, registry, rows, sources, wanted, metric,
                                   memo)
    found.sort(key=lambda f: (-f.score, f.complexity))
    out: list[Child] = []
    answers: set[tuple] = set()
    for f in found:
        if f.score <= 0 or len(out) >= keep:
            break
        if (f.node, f.output, f.predictions) in answers:
            continue  # answers as a simpler one does: one of them is enough
        answers.add((f.node, f.output, f.predictions))
        found_here = children(spec, [_edits(spec.node(f.node), f)],
                              note=f"glue found from {len(rows)} training examples: "
                                   f"{f.score:.2f}")
        out += [c for c in found_here if all(c.spec != o.spec for o in out)]
    return out


def _for_tool(node: NodeSpec, tool: str, registry: ToolRegistry, rows: list[Example],
              sources: list[str], wanted: list, metric: Metric, memo: ToolMemo) -> list[Found]:
    fields = registry.get(tool).args_model.model_fields
    required = [a for a, f in fields.items() if f.is_required()]
    if not 1 <= len(required) <= 3:
        return []
    per_arg = []
    for arg in required:
        chains = [(src, ch) for src in sources
                  for ch in arg_chains([ex.inputs.get(src) for ex in rows], fields[arg].annotation)]
        chains.sort(key=lambda c: complexity(c[1]))
        per_arg.append(chains[:MAX_CHAINS])
    width = max(1, int(MAX_COMBOS ** (1 / len(required))))
    combos = itertools.product(*[c[:width] if len(required) > 1 else c for c in per_arg])
    found = []
    for combo in combos:
        probe = _results(tool, registry, rows[:PROBE], required, combo, memo)
        if probe is None or not any(_best_output(probe, rows[:PROBE], f, metric)[0] > 0
                                    for f in wanted):
            if tool in memo.broken or memo.calls >= MAX_TOOL_CALLS:
                break
            continue  # nothing of the answer on the first examples: not worth every example
        results = _results(tool, registry, rows, required, combo, memo)
        if results is None:
            if tool in memo.broken or memo.calls >= MAX_TOOL_CALLS:
                break
            continue
        wiring = tuple((arg, src, ch) for arg, (src, ch) in zip(required, combo))
        cost = sum(complexity(ch) for _, _, ch in wiring)
        for f in wanted:
            best = _best_output(results, rows, f, metric)
            if best[0] > 0:
                found.append(Found(node.name, tool, wiring, f.name, best[1], best[0],
                                   cost + complexity(best[1]),
                                   _predictions(results, best[1], f.type)))
    return found


def _predictions(results: list[str | None], chain: tuple, type_: str) -> tuple:
    """What a found glue answers on each example (two glues that answer alike are one)."""
    out = []
    for r in results:
        try:
            out.append(repr(coerce(run_chain(chain, r), type_)) if r is not None else None)
        except (GlueError, TypeError, ValueError, OverflowError):
            out.append(None)
    return tuple(out)


def _results(tool: str, registry: ToolRegistry, rows: list[Example], args: list[str],
             combo, memo: ToolMemo) -> list[str | None] | None:
    """The tool's result on each example with the combination's arguments (None where it
    failed); None if no call succeeded or the call budget is spent."""
    out: list = []
    for ex in rows:
        try:
            values = {a: run_chain(ch, ex.inputs.get(src)) if ch else ex.inputs.get(src)
                      for a, (src, ch) in zip(args, combo)}
        except GlueError:
            out.append(None)
            continue
        key = f"{tool}\x00{sorted(values.items())!r}"
        if key not in memo.results:
            if memo.calls >= MAX_TOOL_CALLS:
                return None
            memo.calls += 1
            call = registry.call(tool, values)
            if call.error and call.error.startswith("timed out"):
                memo.broken.add(tool)  # a tool that hangs is not enumerated any further
                return None
            memo.results[key] = call.result if call.ok else None
        out.append(memo.results[key])
    return out if any(r is not None for r in out) else None


def _best_output(results: list[str | None], rows: list[Example], f, metric: Metric
                 ) -> tuple[float, tuple]:
    """(score, chain) of the output chain that scores best on the examples (the simplest on a
    tie)."""
    ok = [r for r in results if r is not None]
    wants = [ex.expected.get(f.name) for ex, r in zip(rows, results) if r is not None]
    best: tuple[float, tuple] = (0.0, ())
    for chain in output_chains(ok, wants, f.type):
        total = 0.0
        for ex, r in zip(rows, results):
            if r is None or ex.expected is None or f.name not in ex.expected:
                continue
            try:
                value = coerce(run_chain(chain, r), f.type)
            except (GlueError, TypeError, ValueError, OverflowError):
                continue
            if f.choices and value not in f.choices:
                continue
            total += score(metric, {f.name: value}, {f.name: ex.expected[f.name]}).score
        mean = total / len(rows)
        if mean > best[0] + 1e-12:
            best = (mean, chain)
        if mean >= 1.0:
            break
    return best


def _edits(node: NodeSpec, f: Found) -> list[Edit]:
    """The edits of a found glue: the tool attached, its first call written with the glue on
    each argument, the output bound to its result through the output glue."""
    t = f.tool
    args = {arg: (src if not ch else InputBinding(input=src, via=ch)) for arg, src, ch in f.wiring}
    edits: list[Edit] = attached(node, t) + [WriteCall(node=node.name, tool=t, args=args)]
    if f.output is not None:
        edits.append(BindOutput(node=node.name, output=f.output, binding=t if not f.out_via else
                                ToolBinding(tool=t, via=f.out_via)))
    return edits
