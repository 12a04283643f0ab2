"""A step's judging of its candidates, as functions of a scorer: **screen** every candidate on a
minibatch (and the merge of the best two), **validate** the best few on the whole validation
split and gate each against its parent, a promising gain earning a **second look** on unseen
training examples. Each candidate comes back with its scores and its decision (``decide``)."""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from localsym.agent.spec import PipelineSpec
from localsym.data import Example
from localsym.learn.events import Evidence
from localsym.learn.gate import TOL, Gate, Verdict, is_tie
from localsym.learn.propose.merge import merge
from localsym.learn.search import Candidate, PoolEntry, spec_key, unseen
from localsym.seeds import Salt, rng


class Scorer(Protocol):
    """What judging needs of a run: scores and trajectories of a spec on examples, the dense
    score (None where the run has no tie-break), and the budget's check before each scoring."""

    def runs(self, spec: PipelineSpec, examples: list[Example], desc: str
             ) -> tuple[list[float], list]: ...

    def dense(self, spec: PipelineSpec, examples: list[Example], trajectories: list
              ) -> float | None: ...

    def check_budget(self) -> None: ...


def screen(scorer: Scorer, candidates: list[Candidate], mb: list[Example], base: float,
           step: int, keep: int, merge_with: tuple[PipelineSpec, list[str]] | None = None,
           max_calls: int | None = None) -> list[Candidate]:
    """Score the candidates on the minibatch by racing (and, with ``merge_with`` = (parent,
    tried), the merge of the best two, appended to ``candidates``); the best ``keep`` of those
    beating the parent ``base`` there, best first (ties keep the proposal order). Each is
    scored on the first half first: one that could not beat the parent, or reach the ``keep``
    best so far, even with full marks on the rest is not scored further. ``max_calls``: the
    model calls screening may spend (the candidates left then are not scored). A parent with
    full marks there cannot be beaten: nothing is scored."""
    if base >= 1.0:
        for c in candidates:
            c.decide("screened out", "the parent scores full marks on the minibatch: nothing "
                                     "can beat it there")
        return []
    race = _Race(scorer, mb, base, step, keep, max_calls)
    eligible = [c for c in candidates if race.beats(c)]
    merged = merge_best(merge_with[0], eligible, merge_with[1]) if merge_with else None
    if merged is not None:
        candidates.append(merged)
        if race.beats(merged):
            eligible.append(merged)
    eligible.sort(key=lambda c: -(c.minibatch or 0.0))
    for c in eligible[keep:]:
        c.decide("screened out", f"not among the {keep} best on the minibatch")
    return eligible[:keep]


class _Race:
    """Screening by racing: the first half of the minibatch, then the rest only for a
    candidate that can still win (exact bounds: the decisions are those of scoring everything,
    but for the merge, which then sees only the candidates scored whole)."""

    def __init__(self, scorer: Scorer, mb: list[Example], base: float, step: int, keep: int,
                 max_calls: int | None):
        self.scorer, self.mb, self.base, self.step, self.keep = scorer, mb, base, step, keep
        self.max_calls, self.spent, self.best = max_calls, 0, []  # type: ignore[var-annotated]

    def beats(self, c: Candidate) -> bool:
        """Score ``c`` (as far as it can still win); whether it beats the parent there."""
        self.scorer.check_budget()
        if self.max_calls is not None and self.spent >= self.max_calls:
            c.decide("screened out", f"the step's screening budget ({self.max_calls} model "
                                     "calls) was spent")
            return False
        n, half = len(self.mb), (len(self.mb) + 1) // 2
        first = self._runs(c, self.mb[:half])
        upper = (sum(first) + n - half) / n
        bar = sorted(self.best, reverse=True)[self.keep - 1] if len(self.best) >= self.keep \
            else None
        if half < n and (upper <= self.base + TOL or (bar is not None and upper <= bar + TOL)):
            c.minibatch = float(np.mean(first))
            why = "the parent" if upper <= self.base + TOL else f"the {self.keep} best so far"
            c.decide("screened out", f"{sum(first):g} of {half} on the first half of the "
                                     f"minibatch: it cannot beat {why}")
            return False
        scores = first + (self._runs(c, self.mb[half:]) if half < n else [])
        c.minibatch = float(np.mean(scores))
        if c.minibatch > self.base + TOL:
            self.best.append(c.minibatch)
            return True
        c.decide("screened out", f"minibatch {c.minibatch:.3f} <= parent {self.base:.3f}")
        return False

    def _runs(self, c: Candidate, examples: list[Example]) -> list[float]:
        scores, runs = self.scorer.runs(c.spec, examples, f"step {self.step}: screen "
                                                          f"{c.source}")
        self.spent += sum(t.calls for t in runs)
        return list(scores)


class Validation:
    """Validate chosen candidates against their parent (an entry of the pool) with ``gate``;
    a promising gain looks again at up to ``evidence`` unseen training examples."""

    def __init__(self, scorer: Scorer, gate: Gate, val: list[Example], train: list[Example],
                 evidence: int, seed: int):
        self.scorer, self.gate, self.val, self.train = scorer, gate, val, train
        self.evidence, self.seed = evidence, seed

    def __call__(self, chosen: list[Candidate], parent: PoolEntry, step: int, used: set[str],
                 admit: Callable[[Candidate, list[float]], None]) -> list[Candidate]:
        """The accepted ones among ``chosen`` (each also passed to ``admit`` with its
        validation scores), every one decided."""
        accepted: list[Candidate] = []
        for c in chosen:
            if any(a.val is not None and a.val >= 1.0 for a in accepted):
                c.decide("screened out", "a candidate validated before it scores full marks: "
                                         "none can beat it")
                continue
            self.scorer.check_budget()
            scores, runs = self.scorer.runs(c.spec, self.val, f"step {step}: validation")
            c.val, c.calls = float(np.mean(scores)), float(np.mean([t.calls for t in runs]))
            c.tokens = float(np.mean([t.tokens for t in runs]))
            c.seconds = round(float(np.mean([t.seconds for t in runs])), 4)
            tie = is_tie(scores, parent.scores)
            if tie:
                self._measure_parent(parent)
                c.dense = self.scorer.dense(c.spec, self.val, runs)
            verdict = self.gate(scores, parent.scores, step, c.dense, parent.dense,
                                c.calls if tie else None, parent.calls if tie else None,
                                tokens_new=c.tokens if tie else None,
                                tokens_old=parent.tokens if tie else None)
            if verdict.promising:
                verdict = self._second_look(c, parent, scores, step, used, verdict)
            c.decide("accepted" if verdict.accepted else "rejected", verdict.reason)
            if verdict.accepted:
                admit(c, scores)
                accepted.append(c)
        return accepted

    def _measure_parent(self, parent: PoolEntry) -> None:
        """The parent's cost and dense score, once (the tie-break needs them)."""
        if parent.dense is None or parent.calls is None or parent.tokens is None:
            runs = self.scorer.runs(parent.spec, self.val, "validation")[1]
            parent.calls = float(np.mean([t.calls for t in runs]))
            parent.tokens = float(np.mean([t.tokens for t in runs]))
            parent.dense = self.scorer.dense(parent.spec, self.val, runs)

    def _second_look(self, c: Candidate, parent: PoolEntry, scores: list[float], step: int,
                     used: set[str], first: Verdict) -> Verdict:
        """A gain that is there but not yet significant: score the candidate and its parent on
        up to ``evidence`` training examples that took no part in proposing, picking or
        screening it, and decide on validation and those together (alpha spent over the two
        looks)."""
        extra = unseen(self.train, used | set(c.seen), c.spec, self.evidence,
                       rng(self.seed, Salt.EVIDENCE, step))
        if not extra:
            return first._replace(reason=f"{first.reason}; no unseen examples left for a "
                                         "second look")
        self.scorer.check_budget()
        new = self.scorer.runs(c.spec, extra, f"step {step}: more evidence")[0]
        old = self.scorer.runs(parent.spec, extra, f"step {step}: more evidence (parent)")[0]
        second = self.gate(scores + new, parent.scores + old, step, n_val=len(scores))
        c.evidence = Evidence(examples=[ex.id for ex in extra], candidate=float(np.mean(new)),
                              parent=float(np.mean(old)), p=second.p)
        return second._replace(
            promising=False, reason=f"{first.reason}; on {len(extra)} unseen training examples "
            f"{c.evidence.parent:.3f} -> {c.evidence.candidate:.3f}, so on validation and them "
            f"together: {second.reason}")


def merge_best(spec: PipelineSpec, eligible: list[Candidate], tried: list[str]
               ) -> Candidate | None:
    """The two best screened candidates from different sources, together (GEPA's merge), if
    they combine and the result was never tried (its key is added to ``tried``)."""
    ranked = sorted(eligible, key=lambda c: -(c.minibatch or 0.0))
    for i, a in enumerate(ranked):
        for b in ranked[i + 1:]:
            if a.source == b.source:
                continue
            new = merge(spec, a.edits, b.edits)  # type: ignore[arg-type]
            key = spec_key(new) if new is not None else None
            if key is not None and key not in tried:
                tried.append(key)
                return Candidate(source="merge", spec=new, edits=a.edits + b.edits)
    return None
