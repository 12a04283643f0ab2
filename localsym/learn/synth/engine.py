"""The synthesis engine: a node's program found from the training data and the declared tools,
with no model call (programming by example).

For a node whose outputs the training rows give, every value is enumerated by size at once
(``bank.py``: the inputs, the constants the data suggests (``consts.py``), glue and operations
of several values, observational equivalence on the rows and on the unlabeled inputs the run
has). Each value is observed against the answers (``targets.py``); after each size the answers
are also sought as parts joined (``join.py``) and as conditionals (``cond.py``). The declared
tools are wired in rounds (``rounds.py``, ``wiring.py``: a best-first search over their
arguments' pools), their results a new epoch of the bank (composed, cut, fed to the tools
again), and local search (``refine.py``) improves a wiring right on some rows only. Programs are
ranked for generalization (a program that fails on unlabeled inputs last, then the smallest,
then the one that assumes least), offered only when much smaller than what they explain
(``offer.py``, ``occam.py``) and when they hold on the held-back rows and beat the parent where
its scores are known. Where only
some rows have a program, it is offered under a guard (the model answers elsewhere). Every bound
is a count (``SynthLimits``), so the same task gives the same program in any process."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from localsym.agent.glue import number_text
from localsym.agent.node import NodeSpec
from localsym.agent.tools import ToolRegistry
from localsym.data import Example
from localsym.learn.synth import consts
from localsym.learn.synth.bank import Bank
from localsym.learn.synth.cond import Conditionals
from localsym.learn.synth.join import join
from localsym.learn.synth.limits import SynthLimits
from localsym.learn.synth.match import table, template
from localsym.learn.synth.memo import MemoTools, ToolMemo
from localsym.learn.synth.offer import Found, Offer
from localsym.learn.synth.rounds import WIRE_LEVEL, ToolRounds
from localsym.learn.synth.search import Search
from localsym.learn.synth.targets import Targets
from localsym.learn.synth.values import Value, apply_op, constant, source
from localsym.metrics import Metric

__all__ = ["Engine", "Found", "SynthStats", "ToolMemo"]

SLACK = 2  # sizes enumerated past a joined or conditional answer, for a smaller plain one


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


def _declared(value: Any, kind: Any) -> Any:
    """An input's value as its declared kind reads it: a number or a truth value in a text
    input is its text (what every operation on text reads it as at run time)."""
    if kind == "text" and isinstance(value, bool):
        return "true" if value else "false"
    if kind == "text" and isinstance(value, (int, float)):
        return number_text(value)
    return value


class Engine:
    """One search per step, over every node whose outputs the data gives."""

    def __init__(self, registry: ToolRegistry, metric: Metric, limits: SynthLimits,
                 memo: ToolMemo):
        self.registry, self.metric, self.limits, self.memo = registry, metric, limits, memo
        self.tools = MemoTools(registry, memo, limits.tool_calls)
        self.stats = SynthStats()
        self.rounds = ToolRounds(registry, limits, memo, self.tools, self.stats, self._observe)
        self.offer = Offer(metric, limits, self.tools, self._conditional)

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
        spent = ""  # the tools' bound, once a round reached it: no more calls, but the
        # results so far are still composed at every size
        for round_ in range(rounds + 1):  # the values tools are wired from, each round's
            # results composed with them, and at the end every size
            last = round_ == rounds or s.targets.solved() or bool(spent)
            share = (round_ + 1) / (rounds + 1)
            s.bank.share = None if last else (int(s.bank.capacity * share),
                                              int(self.limits.tried * share))
            self._levels(s, 2, self.limits.level if last else WIRE_LEVEL)
            if last or s.targets.solved() or s.bank.stopped_by not in ("", "share"):
                break
            s.bank.stopped_by, s.bank.share = "", None  # a share bounds the enumeration only
            results = self.rounds.round(s, tools, round_)
            if s.bank.stopped_by == "tool calls":
                spent, s.bank.stopped_by = s.bank.stopped_by, ""
            if s.bank.stopped_by not in ("", "share"):
                break
            s.bank.stopped_by = ""
            s.bank.new_epoch(results)
        s.bank.stopped_by = s.bank.stopped_by or spent
        if not s.targets.solved() and tools:
            self.rounds.refine(s)
        found = self.offer.checked(s, self.offer.candidates(s), held)
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
    # -- what is offered --------------------------------------------------------------------------
    def _count(self, s: Search, found: list[Found], start: float, calls: int) -> None:
        self.stats.values += len(s.bank.seen)
        self.stats.tried += s.bank.tried
        self.stats.programs += len(found)
        self.stats.tool_calls += self.memo.calls - calls
        self.stats.seconds += time.monotonic() - start
        if s.bank.stopped_by and not self.stats.stopped_by:
            self.stats.stopped_by = s.bank.stopped_by

