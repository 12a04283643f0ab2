"""What a search offers: the programs that answer every row (plainly, joined or by a
conditional), else one under a guard, else the best partial ones; each scored with the run's
metric, offered only where the Occam bound holds and it holds on the held-back rows, ranked for
generalization (the unlabeled inputs it fails on, then its size, then what it assumes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from localsym.agent.node import NodeSpec
from localsym.agent.program import Program, run_program
from localsym.data import Example
from localsym.learn.synth.cond import Conditionals
from localsym.learn.synth.limits import SynthLimits
from localsym.learn.synth.occam import Occam
from localsym.learn.synth.search import Search
from localsym.learn.synth.values import Value
from localsym.metrics import Metric, score


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


class Offer:
    """The programs a finished search offers (see the module doc)."""

    def __init__(self, metric: Metric, limits: SynthLimits, tools: Any,
                 conditional: Callable[[Search, str], Conditionals]):
        self.metric, self.limits, self.tools, self.conditional = metric, limits, tools, conditional

    def candidates(self, s: Search) -> list[tuple[dict[str, Value], Value | None]]:
        """(outputs, guard) to offer: every output answered (plainly, joined or by a
        conditional), else a program under a guard, else the best partial ones."""
        per: dict[str, list[Value]] = {}
        for name in s.targets.names:
            options = list(s.targets.solutions[name]) + \
                [v for v in (s.joined.get(name), s.conds.get(name)) if v is not None]
            per[name] = sorted(options, key=lambda v: self.rank(s, v))
        first = s.targets.names[0]
        if all(per.values()):
            return [({first: v, **{k: per[k][0] for k in s.targets.names[1:]}}, None)
                    for v in per[first][:4 * self.limits.keep]]
        out: list[tuple[dict[str, Value], Value | None]] = []
        if len(s.targets.names) == 1:
            guarded = self.conditional(s, first).guarded(max(2, s.targets.n // 4))
            if guarded is not None:
                out.append(({first: guarded[1]}, guarded[0]))
        # else the partial ones right on the most rows, the smallest first (a constant right
        # on some rows is the majority label, not a program); the first that holds is offered
        best = {k: [v for _, v in sorted(
            ((m, v) for m, v in s.targets.by_mask[k].items() if not v.static),
            key=lambda mv: (-bin(mv[0]).count("1"), mv[1].level))[:self.limits.keep]]
            for k in per}
        for i in range(max(map(len, best.values()), default=0)):
            partial = {k: per[k][0] if per[k] else best[k][min(i, len(best[k]) - 1)]
                       for k in per if per[k] or best[k]}
            if len(partial) == len(per):
                out.append((partial, None))
        return out

    def rank(self, s: Search, v: Value) -> tuple:
        """Generalization first: the unlabeled inputs it fails on, then its size, then what it
        assumes."""
        return (sum(e is None for e in v.vec[len(s.fit):]), v.level, v.cost)

    def checked(self, s: Search, candidates: list, held: list[Example]) -> list[Found]:
        """The candidates as programs: scored with the run's metric, offered only where the
        Occam bound holds and they hold on the held-back examples."""
        out: list[Found] = []
        occam = Occam(s.fit, s.targets.names, list(s.texts), s.bank.serial, len(s.bank.seen))
        for outputs, guard in candidates:
            program = Program(outputs={k: v.tree() for k, v in outputs.items()},
                              guard=guard.tree() if guard is not None else None)
            runs = [self.score_program(s.node, program, ex) for ex in s.fit + held]
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
                             unsure=sum(self.rank(s, v)[0] for v in values),
                             ids=[ex.id for ex in s.fit + held],
                             left=[left for _, left in runs]))
        out.sort(key=Found.rank)
        return out

    def score_program(self, node: NodeSpec, program: Program, ex: Example
                       ) -> tuple[float, bool]:
        """The program's score on ``ex`` (0 where its guard leaves it to the model), and
        whether the guard left it."""
        outputs, _, failed = run_program(program, node.outputs, ex.inputs, self.tools)
        if failed == "the guard does not hold":
            return 0.0, True
        wanted = {k: v for k, v in (ex.expected or {}).items() if k in program.outputs}
        return (score(self.metric, outputs, wanted).score if wanted else 0.0), False
