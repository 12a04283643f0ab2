"""The synthesis engine: a node's program found from the training data and the declared tools,
with no model call (programming by example, bottom-up with observational equivalence).

For a node whose outputs the training examples give: the values of its inputs are grown
(``values.grow``); each wanted output is matched against every value (a chain alone may be the
answer); each declared tool is wired by a best-first search over its arguments' pools
(``wiring``), an assignment that raises or returns nothing on the first examples dropped at
once; each result is a value like any other, grown and matched, and in a further round fed to
the tools again (composition). Outputs are matched as they are, reshaped by a chain, through a
table (a tool's ``true``/``false`` to labels) or a template (the parts of a result in another
order). The programs found are ranked by their score on the examples they were found on, then
simplicity; held-back training examples check the ranking for over-fitting, and only a program
that beats the parent where the parent's scores are known is offered. Everything is bounded
(``SynthLimits``) and counted (``SynthStats``)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel

from localsym.agent.node import NodeSpec
from localsym.agent import expr as E
from localsym.agent.program import Program, run_program
from localsym.agent.tools import ToolCallRecord, ToolRegistry
from localsym.data import Example
from localsym.learn.synth.limits import SynthLimits
from localsym.learn.synth.match import Match, Matcher
from localsym.learn.synth.refine import refine
from localsym.learn.synth.values import (Call, Value, call_result, constant, fits_annotation,
                                         grow, source)
from localsym.learn.synth.wiring import Nogoods, assignments, blamed, rank
from localsym.metrics import Metric, score


GIVE_UP = 400  # a tool given up on after failing so many calls, and answering none
FED = 256  # a round's results (defined on most examples, then the simplest) that go on


@dataclass
class ToolMemo:
    """Tool results by (tool, arguments), kept across steps, and tools given up on."""

    results: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)  # result,
    # or None and the error
    broken: set[str] = field(default_factory=set)
    calls: int = 0
    found: dict[str, list] = field(default_factory=dict)  # a search's programs, by its inputs
    tally: dict[str, tuple[int, int]] = field(default_factory=dict)  # per tool: worked, failed


class SynthStats(BaseModel):
    """What one search looked at: values kept, assignments tried, distinct tool calls made,
    programs found, seconds; and whether a bound stopped it."""

    values: int = 0
    assignments: int = 0
    tool_calls: int = 0
    programs: int = 0
    seconds: float = 0.0
    stopped_by: str = ""


@dataclass
class Found:
    """A program the data supports for one node: its scores on the training examples (per
    example, those it was found on first), its simplicity, what it answers."""

    node: str
    program: Program
    scores: list[float]
    held: list[float]
    cost: int
    answers: tuple

    @property
    def score(self) -> float:
        return float(np.mean(self.scores + self.held)) if self.scores or self.held else 0.0


class MemoTools:
    """A tool registry's calls through the memo, within the call budget (what ``run_program``
    calls on the held-back examples)."""

    def __init__(self, registry: ToolRegistry, memo: ToolMemo, budget: int):
        self.registry, self.memo, self.budget = registry, memo, budget

    def call(self, tool: str, args: dict[str, Any]):
        key = f"{tool}\x00{json.dumps(args, sort_keys=True, default=str)}"
        if key not in self.memo.results:
            if tool in self.memo.broken or self.memo.calls >= self.budget:
                return ToolCallRecord(tool=tool, args=args, error="not called (search bound)")
            self.memo.calls += 1
            record = self.registry.call(tool, args)
            if record.error and record.error.startswith("timed out"):
                self.memo.broken.add(tool)  # a tool that hangs is not called any further
            worked, failed = self.memo.tally.get(tool, (0, 0))
            self.memo.tally[tool] = (worked + record.ok, failed + (not record.ok))
            if not worked and not record.ok and failed + 1 >= GIVE_UP:
                self.memo.broken.add(tool)  # it failed on every call so far: given up
            self.memo.results[key] = (record.result, None) if record.ok else \
                (None, str(record.error)[:300])
        result, error = self.memo.results[key]
        return ToolCallRecord(tool=tool, args=args, result=result, error=error)


class Engine:
    """One search per step, over every node whose outputs the data gives."""

    def __init__(self, registry: ToolRegistry, metric: Metric, limits: SynthLimits,
                 memo: ToolMemo):
        self.registry, self.metric, self.limits, self.memo = registry, metric, limits, memo
        self.tools = MemoTools(registry, memo, limits.tool_calls)
        self.stats = SynthStats()

    def search(self, node: NodeSpec, tools: list[str], rows: list[Example],
               known: dict[str, float]) -> list[Found]:
        """Programs for ``node`` from its example inputs and ``tools`` on ``rows``, best first;
        ``known``: the parent's score on some of them (a program must beat it there)."""
        start, calls = time.monotonic(), self.memo.calls
        deadline = start + self.limits.seconds
        n_held = int(len(rows) * self.limits.held_out) if len(rows) >= 8 else 0
        fit, held = rows[:len(rows) - n_held], rows[len(rows) - n_held:]
        inputs = [i for i in node.inputs if all(i in ex.inputs for ex in fit)]
        wanted = [f for f in node.outputs if all(f.name in (ex.expected or {}) for ex in fit)]
        if not inputs or not wanted:
            return []
        matcher = Matcher(self.metric, wanted, fit)
        seen: dict = {}
        seeds = [source(i, tuple(ex.inputs[i] for ex in fit)) for i in inputs] + \
            [constant(c, len(fit)) for c in constants(fit, inputs)]
        need = max(1, (len(fit) + 1) // 2)
        base = grow(seeds, self.limits.depth, self.limits.values, deadline, need, seen).values
        matcher.add(base)
        texts = {i: [str(ex.inputs[i]) for ex in fit[:8]] for i in inputs}
        results: list[Value] = []
        for round_ in range(self.limits.steps):
            if matcher.best() >= 1.0 or time.monotonic() >= deadline:
                break
            new = self._round(tools, base, results, round_, fit, texts, deadline, seen, matcher)
            new = sorted(new, key=lambda v: (-v.defined, v.cost))[:FED]  # the fullest, simplest
            depth = 0 if matcher.best() >= 1.0 else min(2, self.limits.depth)
            grown = grow(new, depth, self.limits.values, deadline, need, seen).values
            matcher.add(grown)
            results += grown
        if matcher.best() < 1.0:
            self._refine(matcher, base, texts, fit, deadline)
        self.stats.values += len(seen)
        found = self._checked(node, matcher.matches(), fit, held, known)
        self.stats.programs += len(found)
        self.stats.tool_calls += self.memo.calls - calls
        self.stats.seconds += time.monotonic() - start
        if time.monotonic() >= deadline:
            self.stats.stopped_by = "seconds"
        elif self.memo.calls >= self.limits.tool_calls:
            self.stats.stopped_by = "tool calls"
        return found

    def _round(self, tools: list[str], base: list[Value], results: list[Value], round_: int,
               fit: list[Example], texts: dict, deadline: float, seen: dict, matcher: Matcher
               ) -> list[Value]:
        """One round of tool calls: every tool wired from the values so far (after the first
        round, with at least one argument an earlier result); the new results (each matched at
        once: a result that gives every output on every example ends the round)."""
        out: list[Value] = []
        for tool in tools:
            if tool in self.memo.broken:
                continue
            fields = self.registry.get(tool).args_model.model_fields
            args = [a for a, f in fields.items() if f.is_required()]
            if not args:
                continue
            width = max(self.limits.width, int(2 * self.limits.assignments ** (1 / len(args))))
            pools = [self._pool(a, fields[a].annotation, base + results, texts, width)
                     for a in args]
            fed = [self._pool(a, fields[a].annotation, results, texts, self.limits.assignments)
                   for a in args]
            forced = range(len(args)) if round_ else [None]
            nogoods = Nogoods()
            for at in forced:  # after the first round, one argument an earlier result
                chosen = pools if at is None else [p if i != at else fed[i]
                                                   for i, p in enumerate(pools)]
                for assignment in assignments(chosen, [fields[a].annotation for a in args],
                                              self.limits.assignments, nogoods):
                    if time.monotonic() >= deadline or self.memo.calls >= self.limits.tool_calls:
                        return out
                    self.stats.assignments += 1
                    value, failures = self._call(tool, tuple(zip(args, assignment)), fit)
                    nogoods.record(assignment, value is not None, blamed(failures))
                    if value is not None and value.vec not in seen:
                        out.append(value)
                        matcher.add([value])
                        if matcher.best() >= 1.0:
                            return out
        return out

    def _refine(self, matcher: Matcher, base: list[Value], texts: dict, fit: list[Example],
                deadline: float) -> None:
        """Local search from the best partial programs (``refine``): each call's arguments
        given the other values of their pools, while the score rises."""
        pools: dict[tuple[str, str], list[Value]] = {}

        def pool(call: Call, i: int) -> list[Value]:
            arg = call.args[i][0]
            if (call.tool, arg) not in pools:
                annotation = self.registry.get(call.tool).args_model.model_fields[arg].annotation
                pools[(call.tool, arg)] = [v for _, v in self._pool(
                    arg, annotation, base, texts, 4 * self.limits.width)]
            return pools[(call.tool, arg)]

        def recompute(call: Call) -> Value | None:
            self.stats.assignments += 1
            return self._call(call.tool, call.args, fit)[0]

        for m in matcher.matches()[:3]:
            for name, v in m.outputs.items():
                if v.call is None:
                    continue

                def score(x: Value, n: str = name) -> float:
                    return matcher.score_of(x, n)

                better, _ = refine(v, score, pool, recompute, deadline, self.limits.assignments)
                if better is not v:
                    matcher.add([better])

    def _pool(self, arg: str, annotation: Any, values: list[Value], texts: dict, width: int
              ) -> list[tuple[int, Value]]:
        """The values ``arg`` can take, ranked, the best ``width`` of them."""
        pool = [(rank(v, arg, texts.get(v.source, [])), v) for v in values
                if fits_annotation(v, annotation)]
        pool.sort(key=lambda rv: rv[0])
        return pool[:width]

    def _call(self, tool: str, args: tuple[tuple[str, Value], ...], fit: list[Example]
              ) -> tuple[Value | None, list[tuple[str, tuple]]]:
        """The tool's results on ``fit`` with these arguments (probes first: an assignment that
        fails on all of them is dropped), as a value (None when nothing came back); and the
        failures, each its error and the argument values."""
        results: list[Any] = []
        failures: list[tuple[str, tuple]] = []
        for i in range(len(fit)):
            entries = tuple(v.vec[i] for _, v in args)
            if any(e is None for e in entries):
                results.append(None)
                continue
            record = self.tools.call(tool, {a: e for (a, _), e in zip(args, entries)})
            results.append(record.result if record.ok else None)
            if not record.ok:
                failures.append((str(record.error), entries))
            if len(failures) >= self.limits.probe and not any(r is not None for r in results):
                return None, failures  # raises or returns nothing on the first examples
        if not any(r is not None for r in results):
            return None, failures
        return call_result(Call(tool, args), tuple(results)), failures

    def _checked(self, node: NodeSpec, matches: list[Match], fit: list[Example],
                 held: list[Example], known: dict[str, float]) -> list[Found]:
        """The matches as programs, checked on the held-back examples (a ranking that does
        not hold there is over-fitting: dropped) and against the parent where its scores are
        known; ranked by the training score, then simplicity."""
        out: list[Found] = []
        for m in matches[:4 * self.limits.keep]:
            if sum(x >= 1.0 for x in m.scores) < max(3, len(m.scores) // 4):
                continue  # right on too few examples to be more than chance
            program = program_of(m.outputs)
            held_scores = [self._score_program(node, program, ex) for ex in held]
            if held and np.mean(held_scores) < min(m.score - 0.25, m.score / 2):
                continue  # it does not hold on examples it was not found on: over-fitting
            scores = list(m.scores)
            rows = fit + held
            mine = scores + held_scores
            mask = [ex.id in known for ex in rows]
            if sum(mask) >= 2:
                ours = np.mean([s for s, k in zip(mine, mask) if k])
                theirs = np.mean([known[ex.id] for ex in rows if ex.id in known])
                if ours <= theirs + 1e-12:
                    continue
            out.append(Found(node.name, program, scores, held_scores, m.cost, m.answers))
        out.sort(key=lambda f: (-f.score, f.cost))
        return out

    def _score_program(self, node: NodeSpec, program: Program, ex: Example) -> float:
        outputs, _, _ = run_program(program, node.outputs, ex.inputs, self.tools)
        wanted = {k: v for k, v in (ex.expected or {}).items() if k in program.outputs}
        return score(self.metric, outputs, wanted).score if wanted else 0.0


def program_of(outputs: dict[str, Value]) -> Program:
    """The program of some values: one tree per output."""
    return Program(outputs={k: expr_of(v) for k, v in outputs.items()})


def expr_of(v: Value) -> E.Expr:
    """A value's tree: its start (an input, a constant, a tool call) through its glue."""
    if v.call is not None:
        start: E.Expr = E.Call(v.call.tool, tuple((a, expr_of(w)) for a, w in v.call.args))
    elif v.source is not None:
        start = E.Input(v.source)
    else:
        start = E.Const(v.const)
    return E.via(start, v.via)


def constants(rows: list[Example], inputs: list[str]) -> list[Any]:
    """Constants the data suggests: a word or a number every example's inputs hold (a unit, a
    time zone, a delimiter), at most eight."""
    texts = [" ".join(str(ex.inputs[i]) for i in inputs) for ex in rows]
    common: set[str] | None = None
    for t in texts:
        words = set(re.findall(r"[A-Za-z]{2,}|\d+", t))
        common = words if common is None else common & words
    return sorted(common or [], key=lambda w: (len(w), w))[:8]


