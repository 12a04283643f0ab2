"""The declared tools wired in rounds: every tool's arguments from the values the bank holds
(``wiring.py``: a best-first search over ranked pools, the items of one list in order first),
each assignment tried on the rows (probes first), the results the fullest and simplest first
for the next epoch of the bank; and local search (``refine.py``) from the best partial wirings."""

from __future__ import annotations

from typing import Any, Callable

from localsym.agent.glue import Item
from localsym.agent.tools import ToolRegistry
from localsym.learn.synth import consts
from localsym.learn.synth.limits import SynthLimits
from localsym.learn.synth.memo import MemoTools, ToolMemo
from localsym.learn.synth.menu import MAX_INDEX, make
from localsym.learn.synth.refine import refine
from localsym.learn.synth.search import Search
from localsym.learn.synth.values import (Call, Value, apply_op, call_result, constant,
                                         fits_annotation)
from localsym.learn.synth.wiring import Nogoods, assignments, blamed, rank

FED = 256  # a round's results (defined on most examples, then the simplest) that go on
WIRE_LEVEL = 5  # the largest value a tool argument is given
OWN = 24  # a tool's own constants each argument's pool ends with


class ToolRounds:
    """The tools' side of a search: ``observe`` a value found (the engine's), ``stats`` counts
    the assignments tried."""

    def __init__(self, registry: ToolRegistry, limits: SynthLimits, memo: ToolMemo,
                 tools: MemoTools, stats: Any, observe: Callable[[Search, Value], None]):
        self.registry, self.limits, self.memo, self.tools = registry, limits, memo, tools
        self.stats, self.observe = stats, observe

    def round(self, s: Search, tools: list[str], round_: int) -> list[Value]:
        """One round of tool calls: every tool wired from the values so far (after the first
        round, with at least one argument an earlier result); the results, the fullest and
        simplest first."""
        out: list[Value] = []
        values = self._wirable(s)
        results = [v for v in values if v.call is not None]
        for tool in tools:
            if tool in self.memo.broken:
                continue
            spec = self.registry.get(tool)
            fields = spec.args_model.model_fields
            args = [a for a, f in fields.items() if f.is_required()]
            if not args:
                continue
            own = [constant(c, s.width, 2) for c in consts.of_tool(spec.fn)]
            width = max(self.limits.width, int(2 * self.limits.assignments ** (1 / len(args))))
            pools = [self._pool(a, fields[a].annotation, values, s.texts, width, own)
                     for a in args]
            fed = [self._pool(a, fields[a].annotation, results, s.texts,
                              self.limits.assignments, []) for a in args]
            nogoods = Nogoods()
            for at in (range(len(args)) if round_ else [None]):
                chosen = pools if at is None else [p if i != at else fed[i]
                                                   for i, p in enumerate(pools)]
                for assignment in assignments(chosen, [fields[a].annotation for a in args],
                                              self.limits.assignments, nogoods):
                    if self.memo.calls >= self.limits.tool_calls:
                        s.bank.stopped_by = "tool calls"
                        return self._fed(out)
                    if s.bank.stop():
                        return self._fed(out)
                    self.stats.assignments += 1
                    value, failures = self._call(s, tool, tuple(zip(args, assignment)),
                                                 2 + round_)
                    nogoods.record(assignment, value is not None, blamed(failures))
                    if value is not None and not s.bank.has(value):
                        out.append(value)
                        self.observe(s, value)
                        if s.targets.solved():
                            return self._fed(out)
        return self._fed(out)

    @staticmethod
    def _wirable(s: Search) -> list[Value]:
        """The values a tool argument may take: the small ones the bank keeps, and every item
        of its small lists (the numbers of a word problem in order, which the bank may have
        kept under another name where the rows are few)."""
        out = [v for lvl in range(1, WIRE_LEVEL + 1) for p in ("text", "int", "num", "bool")
               for v in s.bank.values(lvl, p)]
        for lvl in (2, 3):
            for lst in s.bank.values(lvl, "list"):
                shortest = min((len(e) for e in lst.vec[:len(s.fit)] if e is not None),
                               default=0)
                for k in list(range(min(shortest, MAX_INDEX))) + [-1]:
                    op = make(Item, index=k)
                    out.append(lst.then(op, apply_op(op, lst.vec)))
        return out

    @staticmethod
    def _fed(values: list[Value]) -> list[Value]:
        return sorted(values, key=lambda v: (-v.defined, v.cost))[:FED]

    def _pool(self, arg: str, annotation: Any, values: list[Value], texts: dict, width: int,
              own: list[Value]) -> list[tuple[int, Value]]:
        """The values ``arg`` can take, ranked, the best ``width`` of them, then the tool's own
        constants."""
        pool = [(rank(v, arg, texts.get(v.source, [])), v) for v in values
                if v.kind != "list" and fits_annotation(v, annotation)]
        pool.sort(key=lambda rv: rv[0])
        mine = [(rank(v, arg, []), v) for v in own if fits_annotation(v, annotation)]
        return pool[:width] + mine[:OWN]

    def _call(self, s: Search, tool: str, args: tuple[tuple[str, Value], ...], level: int
              ) -> tuple[Value | None, list[tuple[str, tuple]]]:
        """The tool's results on every row with these arguments (the training rows first, and
        their first ``probe`` before the rest: an assignment that fails on all of them is
        dropped), as a value (None when nothing came back on the training rows); and the
        failures, each its error and the argument values."""
        results: list[Any] = []
        failures: list[tuple[str, tuple]] = []
        n = len(s.fit)
        for i in range(s.width):
            if i == n and not any(r is not None for r in results):
                return None, failures
            entries = tuple(v.vec[i] for _, v in args)
            if any(e is None for e in entries):
                results.append(None)
                continue
            record = self.tools.call(tool, {a: e for (a, _), e in zip(args, entries)})
            results.append(record.result if record.ok else None)
            if not record.ok and i < n:
                failures.append((str(record.error), entries))
            if len(failures) >= self.limits.probe and not any(r is not None for r in results):
                return None, failures  # raises or returns nothing on the first examples
        if not any(r is not None for r in results[:n]):
            return None, failures
        return call_result(Call(tool, args), tuple(results), level), failures

    def refine(self, s: Search) -> None:
        """Local search from the best partial programs with tool calls (``refine``): each
        call's arguments given the other values of their pools, while the share of rows they
        answer rises."""
        pools: dict[tuple[str, str], list[Value]] = {}
        values = self._wirable(s)

        def pool(call: Call, i: int) -> list[Value]:
            arg = call.args[i][0]
            if (call.tool, arg) not in pools:
                annotation = self.registry.get(call.tool).args_model.model_fields[arg].annotation
                pools[(call.tool, arg)] = [v for _, v in self._pool(
                    arg, annotation, values, s.texts, 4 * self.limits.width, [])]
            return pools[(call.tool, arg)]

        def recompute(call: Call) -> Value | None:
            self.stats.assignments += 1
            return self._call(s, call.tool, call.args, 2)[0]

        for name in s.targets.names:
            def rate(x: Value, n: str = name) -> float:
                return s.targets.rate(n, x)

            for _, v in list(s.targets.partial[name])[:3]:
                if v.call is None:
                    continue
                better, _ = refine(v, rate, pool, recompute, s.bank.deadline,
                                   self.limits.assignments)
                if better is not v:
                    s.targets.observe(better)
