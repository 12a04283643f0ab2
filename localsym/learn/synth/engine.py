"""The synthesis engine: a node's program found from the training data and the declared tools,
with no model call (programming by example).

For a node whose outputs the training rows give, every value is enumerated by size at once
(``bank.py``: the inputs, the constants the data suggests (``consts.py``), glue and operations
of several values, observational equivalence on the rows and on the unlabeled inputs the run
has). Each value is observed against the answers (``targets.py``); after each size the answers
are also sought as parts joined (``join.py``) and as conditionals (``cond.py``). The declared
tools are wired in rounds (``wiring.py``: a best-first search over their arguments' pools), their
results a new epoch of the bank (composed, cut, fed to the tools again), and local search
(``refine.py``) improves a wiring right on some rows only. Programs are ranked for
generalization (a program that fails on unlabeled inputs last, then the smallest, then the one
that assumes least), offered only when much smaller than what they explain (``occam.py``) and
when they hold on the held-back rows and beat the parent where its scores are known. Where only
some rows have a program, it is offered under a guard (the model answers elsewhere). Every bound
is a count (``SynthLimits``), so the same task gives the same program in any process."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel

from localsym.agent.node import NodeSpec
from localsym.agent.program import Program, run_program
from localsym.agent.tools import ToolCallRecord, ToolRegistry
from localsym.data import Example
from localsym.learn.synth import consts
from localsym.learn.synth.bank import Bank
from localsym.learn.synth.cond import Conditionals
from localsym.learn.synth.join import join
from localsym.agent.glue import Item, number_text
from localsym.learn.synth.limits import SynthLimits
from localsym.learn.synth.match import table, template
from localsym.learn.synth.menu import MAX_INDEX, make
from localsym.learn.synth.occam import Occam
from localsym.learn.synth.refine import refine
from localsym.learn.synth.targets import Targets
from localsym.learn.synth.values import (Call, Value, apply_op, call_result, constant,
                                         fits_annotation, source)
from localsym.learn.synth.wiring import Nogoods, assignments, blamed, rank
from localsym.metrics import Metric, score

GIVE_UP = 400  # a tool given up on after failing so many calls, and answering none
FED = 256  # a round's results (defined on most examples, then the simplest) that go on
WIRE_LEVEL = 5  # the largest value a tool argument is given
OWN = 24  # a tool's own constants each argument's pool ends with
SLACK = 2  # sizes enumerated past a joined or conditional answer, for a smaller plain one


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
    """What one search looked at: values kept and computed, the largest size reached,
    assignments tried, distinct tool calls made, programs found, seconds; and which bound
    stopped it (``seconds`` only as the safety cap)."""

    values: int = 0
    tried: int = 0
    level: int = 0
    assignments: int = 0
    tool_calls: int = 0
    programs: int = 0
    seconds: float = 0.0
    stopped_by: str = ""

    def per_second(self) -> float:
        return self.tried / self.seconds if self.seconds else 0.0


@dataclass
class Found:
    """A program the data supports for one node: its scores on the training examples (per
    example, those it was found on first), its size and cost, what it answers."""

    node: str
    program: Program
    scores: list[float]
    held: list[float]
    cost: int
    answers: tuple
    level: int = 0
    unsure: int = 0  # unlabeled inputs it fails on
    ids: list[str] = field(default_factory=list)  # the rows of scores + held
    left: list[bool] = field(default_factory=list)  # rows its guard leaves to the model

    def beats(self, known: dict[str, float]) -> bool:
        """Whether it beats the parent on the rows where the parent's score is ``known`` (two
        at least; a row its guard leaves to the model scores what the parent scored)."""
        mine = [known.get(i, 0.0) if left else x for i, x, left in
                zip(self.ids, self.scores + self.held, self.left)]
        pairs = [(x, known[i]) for i, x in zip(self.ids, mine) if i in known]
        return len(pairs) < 2 or np.mean([a for a, _ in pairs]) > \
            np.mean([b for _, b in pairs]) + 1e-12

    @property
    def score(self) -> float:
        return float(np.mean(self.scores + self.held)) if self.scores or self.held else 0.0

    def rank(self) -> tuple:
        """Best first: the score, then the fewest unlabeled inputs failed, a guarded program
        before one that answers every row wrongly where the model might not, the smallest,
        the one that assumes least."""
        return (-self.score, self.unsure, self.program.guard is None, self.level, self.cost)


def _declared(value: Any, kind: Any) -> Any:
    """An input's value as its declared kind reads it: a number or a truth value in a text
    input is its text (what every operation on text reads it as at run time)."""
    if kind == "text" and isinstance(value, bool):
        return "true" if value else "false"
    if kind == "text" and isinstance(value, (int, float)):
        return number_text(value)
    return value


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


@dataclass
class Search:
    """One search's state: the rows, the bank and the targets."""

    node: NodeSpec
    fit: list[Example]
    extra: list[dict[str, Any]]  # inputs with no answer (held back, unlabeled)
    bank: Bank
    targets: Targets
    texts: dict[str, list[str]]
    joined: dict[str, Value] = field(default_factory=dict)
    conds: dict[str, Value] = field(default_factory=dict)

    @property
    def width(self) -> int:
        return len(self.fit) + len(self.extra)

    def rows(self) -> list[dict[str, Any]]:
        return [ex.inputs for ex in self.fit] + self.extra


class Engine:
    """One search per step, over every node whose outputs the data gives."""

    def __init__(self, registry: ToolRegistry, metric: Metric, limits: SynthLimits,
                 memo: ToolMemo):
        self.registry, self.metric, self.limits, self.memo = registry, metric, limits, memo
        self.tools = MemoTools(registry, memo, limits.tool_calls)
        self.stats = SynthStats()

    def search(self, node: NodeSpec, tools: list[str], rows: list[Example],
               known: dict[str, float], unlabeled: list[dict[str, Any]] | None = None,
               kinds: dict[str, Any] | None = None) -> list[Found]:
        """Programs for ``node`` from its example inputs and ``tools`` on ``rows``, best first;
        ``known``: the parent's score on some of them (a program must beat it there);
        ``unlabeled``: inputs with no answer, which rank the programs; ``kinds``: each input's
        declared kind (a number in a text input is read as its text, as the spec says)."""
        return [f for f in self.found(node, tools, rows, unlabeled, kinds) if f.beats(known)]

    def found(self, node: NodeSpec, tools: list[str], rows: list[Example],
              unlabeled: list[dict[str, Any]] | None = None,
              kinds: dict[str, Any] | None = None) -> list[Found]:
        """Every program the rows support for ``node``, best first, whatever the parent
        scores (what ``search`` filters)."""
        start, calls = time.monotonic(), self.memo.calls
        n_held = int(len(rows) * self.limits.held_out) if len(rows) >= 8 else 0
        fit, held = rows[:len(rows) - n_held], rows[len(rows) - n_held:]
        inputs = [i for i in node.inputs if all(i in ex.inputs for ex in fit)]
        wanted = [f for f in node.outputs if all(f.name in (ex.expected or {}) for ex in fit)]
        if not inputs or not wanted or not fit:
            return []
        s = self._start(node, inputs, wanted, fit, held, unlabeled or [], start, kinds or {})
        rounds = self.limits.steps if tools else 0
        for round_ in range(rounds + 1):  # the values tools are wired from, each round's
            # results composed with them, and at the end every size
            last = round_ == rounds or s.targets.solved()
            share = (round_ + 1) / (rounds + 1)
            s.bank.share = None if last else (int(s.bank.capacity * share),
                                              int(self.limits.tried * share))
            self._levels(s, 2, self.limits.level if last else WIRE_LEVEL)
            if last or s.bank.stopped_by not in ("", "share"):
                break
            s.bank.stopped_by = ""
            results = self._round(s, tools, round_)
            if s.bank.stopped_by not in ("", "share"):
                break
            s.bank.stopped_by = ""
            s.bank.new_epoch(results)
        if not s.targets.solved() and tools:
            self._refine(s)
        found = self._checked(s, self._candidates(s), held)
        self._count(s, found, start, calls)
        return found

    # -- the search ------------------------------------------------------------------------------
    def _start(self, node, inputs, wanted, fit, held, unlabeled, start, kinds) -> Search:
        extra = [ex.inputs for ex in held] + [u for u in unlabeled
                                              if all(i in u for i in inputs)]
        extra = extra[:len(held) + self.limits.unlabeled]
        targets = Targets(wanted, fit)
        deadline = start + self.limits.seconds
        s = Search(node, fit, extra, None, targets,  # type: ignore[arg-type]
                   {i: [str(ex.inputs[i]) for ex in fit[:8]] for i in inputs})
        s.bank = Bank(self.limits, s.width, lambda v: self._observe(s, v), deadline)
        for i in inputs:
            s.bank.add(source(i, tuple(_declared(r[i], kinds.get(i)) for r in s.rows())))
        for value, level in consts.from_data(fit, inputs, [f.name for f in wanted]):
            s.bank.add(constant(value, s.width, level))
        return s

    def _observe(self, s: Search, v: Value) -> None:
        s.targets.observe(v)
        if v.call is not None and not v.via:  # a tool's result through a table or a template
            for name in s.targets.names:
                answers = [ex.expected[name] for ex in s.fit]  # type: ignore[index]
                for op in (table(v.vec[:len(s.fit)], answers),
                           template(v.vec[:len(s.fit)], [str(a) for a in answers])):
                    if op is not None:
                        s.bank.add(v.then(op, apply_op(op, v.vec)))

    def _levels(self, s: Search, first: int, last: int) -> None:
        """Enumerate size after size until the answers are found (then a little past, for a
        smaller plain one), or a bound is reached."""
        goal = None
        for level in range(first, last + 1):
            s.bank.fill(level)
            self.stats.level = max(self.stats.level, level)
            if s.targets.solved():
                return  # every value of this size is in: the smallest plain answers
            goal = self._joined_or_branched(s, level)
            if s.bank.stopped_by or (goal is not None and level + SLACK >= goal):
                return
        if goal is None:
            self._joined_or_branched(s, self.limits.level, final=True)

    def _joined_or_branched(self, s: Search, level: int, final: bool = False) -> int | None:
        """The answers as joined parts, else as conditionals (at every other size, and at the
        end); the size of the largest, or None while an output has neither."""
        sizes = []
        for name in s.targets.names:
            if s.targets.solutions[name]:
                sizes.append(s.targets.solutions[name][0].level)
                continue
            if name in s.targets.texts and name not in s.joined:
                j = join(s.targets.pieces[name], s.targets.texts[name], s.targets.all,
                         self.limits.pieces)
                if j is not None:
                    s.joined[name] = j
            if name not in s.joined and (final or s.bank.stopped_by or level % 2 == 0) and \
                    level >= 4 and self.limits.branches > 1:
                c = self._conditional(s, name).solve()
                if c is not None and (name not in s.conds or c.level < s.conds[name].level):
                    s.conds[name] = c
            best = [v.level for v in (s.joined.get(name), s.conds.get(name)) if v is not None]
            if not best:
                return None
            sizes.append(min(best))
        return max(sizes) if sizes else None

    def _conditional(self, s: Search, name: str) -> Conditionals:
        def joined(rows: int) -> Value | None:
            if name not in s.targets.texts:
                return None
            return join(s.targets.pieces[name], s.targets.texts[name], rows, self.limits.pieces)
        return Conditionals(s.targets.by_mask[name], s.targets.predicates, s.targets.n, joined,
                            self.limits.branches)

    # -- tools -----------------------------------------------------------------------------------
    def _round(self, s: Search, tools: list[str], round_: int) -> list[Value]:
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
                        self._observe(s, value)
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

    def _refine(self, s: Search) -> None:
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

    # -- what is offered --------------------------------------------------------------------------
    def _candidates(self, s: Search) -> list[tuple[dict[str, Value], Value | None]]:
        """(outputs, guard) to offer: every output answered (plainly, joined or by a
        conditional), else a program under a guard, else the best partial one."""
        per: dict[str, list[Value]] = {}
        for name in s.targets.names:
            options = list(s.targets.solutions[name]) + \
                [v for v in (s.joined.get(name), s.conds.get(name)) if v is not None]
            per[name] = sorted(options, key=lambda v: self._rank(s, v))
        first = s.targets.names[0]
        if all(per.values()):
            return [({first: v, **{k: per[k][0] for k in s.targets.names[1:]}}, None)
                    for v in per[first][:4 * self.limits.keep]]
        out: list[tuple[dict[str, Value], Value | None]] = []
        if len(s.targets.names) == 1:
            guarded = self._conditional(s, first).guarded(max(2, s.targets.n // 4))
            if guarded is not None:
                out.append(({first: guarded[1]}, guarded[0]))
        partial = {k: max(((m, v) for m, v in s.targets.by_mask[k].items() if not v.static),
                          key=lambda mv: (bin(mv[0]).count("1"), -mv[1].level),
                          default=(0, None))[1] for k in per}  # a constant right on some
        # rows is the majority label, not a program
        partial = {k: (per[k][0] if per[k] else v) for k, v in partial.items()}
        if all(v is not None for v in partial.values()):
            out.append((partial, None))  # type: ignore[arg-type]
        return out

    def _rank(self, s: Search, v: Value) -> tuple:
        """Generalization first: the unlabeled inputs it fails on, then its size, then what it
        assumes."""
        return (sum(e is None for e in v.vec[len(s.fit):]), v.level, v.cost)

    def _checked(self, s: Search, candidates: list, held: list[Example]) -> list[Found]:
        """The candidates as programs: scored with the run's metric, offered only where the
        Occam bound holds and they hold on the held-back examples."""
        out: list[Found] = []
        occam = Occam(s.fit, s.targets.names, list(s.texts), s.bank.serial, len(s.bank.seen))
        for outputs, guard in candidates:
            program = Program(outputs={k: v.tree() for k, v in outputs.items()},
                              guard=guard.tree() if guard is not None else None)
            runs = [self._score_program(s.node, program, ex) for ex in s.fit + held]
            scores = [x for x, _ in runs[:len(s.fit)]]
            values = list(outputs.values()) + ([guard] if guard is not None else [])
            if not any(scores) or not occam.holds(values, scores):
                continue
            held_scores = [x for x, _ in runs[len(s.fit):]]
            mean = float(np.mean(scores))
            if held and np.mean(held_scores) < min(mean - 0.25, mean / 2):
                continue  # it does not hold on examples it was not found on: over-fitting
            out.append(Found(s.node.name, program, scores, held_scores,
                             sum(v.cost for v in values),
                             tuple(tuple(v.vec) for v in outputs.values()),
                             level=sum(v.level for v in values),
                             unsure=sum(self._rank(s, v)[0] for v in values),
                             ids=[ex.id for ex in s.fit + held],
                             left=[left for _, left in runs]))
        out.sort(key=Found.rank)
        return out

    def _score_program(self, node: NodeSpec, program: Program, ex: Example
                       ) -> tuple[float, bool]:
        """The program's score on ``ex`` (0 where its guard leaves it to the model), and
        whether the guard left it."""
        outputs, _, failed = run_program(program, node.outputs, ex.inputs, self.tools)
        if failed == "the guard does not hold":
            return 0.0, True
        wanted = {k: v for k, v in (ex.expected or {}).items() if k in program.outputs}
        return (score(self.metric, outputs, wanted).score if wanted else 0.0), False

    def _count(self, s: Search, found: list[Found], start: float, calls: int) -> None:
        self.stats.values += len(s.bank.seen)
        self.stats.tried += s.bank.tried
        self.stats.programs += len(found)
        self.stats.tool_calls += self.memo.calls - calls
        self.stats.seconds += time.monotonic() - start
        if s.bank.stopped_by and not self.stats.stopped_by:
            self.stats.stopped_by = s.bank.stopped_by

