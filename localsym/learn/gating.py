"""A step's later phases, for the trainer: **screen** every candidate on a minibatch (and the
merge of the best two), **validate** the best few on the whole validation split and **gate**
each against its parent (a promising gain earns a second look on unseen training examples),
then **commit**: credit the optimizers' memory, make the best accepted candidate the current
agent, keep the best of the pool. The gate's rules themselves are in ``learn/search.py``."""

from __future__ import annotations

from typing import Callable

import numpy as np

from localsym.agent.pipeline import Pipeline
from localsym.agent.spec import PipelineSpec
from localsym.data import Example
from localsym.faults import point
from localsym.learn.events import Evidence
from localsym.learn.optim import LLM_OPTIMIZERS, UpdateRecord
from localsym.learn.search import (Candidate, PoolEntry, Verdict, best_index, dense_rank,
                                   merge_best, unseen)
from localsym.learn.state import TrainConfig, TrainState


class Gating:
    """Mixed into ``Trainer``, whose scoring and gate it uses."""

    config: TrainConfig
    pipeline: Pipeline
    runs: Callable[..., tuple[list[float], list]]
    score: Callable[..., list[float]]
    accept: Callable[..., Verdict]
    _dense: Callable[..., float | None]
    _check_budget: Callable[[], None]

    def _screen_all(self, state: TrainState, spec: PipelineSpec, candidates: list[Candidate],
                    mb: list[Example], base: float) -> list[Candidate]:
        """Screen every candidate (and the merge of the best two) on the minibatch; the best
        ``max_validate`` of those beating the parent go on to validation. A parent with full
        marks there cannot be beaten: nothing is scored."""
        if base >= 1.0:
            for c in candidates:
                c.decision, c.reason = "screened out", "the parent scores full marks on the " \
                                                       "minibatch: nothing can beat it there"
            return []
        eligible = [c for c in candidates if self._screen(c, mb, base, state.step)]
        point("step.update")
        merged = merge_best(spec, eligible, state.tried) if "merge" in self.config.optimizers \
            else None
        if merged is not None:
            candidates.append(merged)
            if self._screen(merged, mb, base, state.step):
                eligible.append(merged)
        eligible.sort(key=lambda c: -(c.minibatch or 0.0))  # stable: ties keep the proposal order
        n = self.config.max_validate
        for c in eligible[n:]:
            c.decision, c.reason = "screened out", f"not among the {n} best on the minibatch"
        return eligible[:n]

    def _commit(self, state: TrainState, parent: PoolEntry, candidates: list[Candidate],
                accepted: list[Candidate]) -> Candidate | None:
        """Credit every candidate in the optimizers' memory; the best accepted one becomes the
        current agent; the best of the pool is kept. Returns that accepted candidate."""
        for c in candidates:
            if c.minibatch is not None and (c.decision != "screened out" or
                                            c.source in LLM_OPTIMIZERS):
                state.memory.append(UpdateRecord(
                    step=state.step, optimizer=c.source, accepted=c.decision == "accepted",
                    val_before=parent.mean,
                    val_after=c.val if c.val is not None else c.minibatch, changes=c.edits))
        top = max(accepted, key=lambda c: (c.val, dense_rank(c.dense))) if accepted else None
        if top is not None:
            state.spec = top.spec
            state.val_scores = next(e.scores for e in state.pool if e.spec == top.spec)
        b = best_index(state.pool)
        state.best_spec, state.best_score = state.pool[b].spec, state.pool[b].mean
        self.pipeline.spec = state.spec
        return top

    def _screen(self, c: Candidate, mb: list[Example], base: float, step: int) -> bool:
        """Score ``c`` on the minibatch; whether it beats the parent there (strictly)."""
        self._check_budget()
        c.minibatch = float(np.mean(self.score(c.spec, mb, f"step {step}: screen {c.source}")))
        if c.minibatch > base + 1e-12:
            return True
        c.decision, c.reason = "screened out", f"minibatch {c.minibatch:.3f} <= parent {base:.3f}"
        return False

    def _validate(self, state: TrainState, parent_id: int, chosen: list[Candidate],
                  val: list[Example], train: list[Example], used: set[str]) -> list[Candidate]:
        """Score ``chosen`` on the validation split and gate each against the parent (a
        promising gain earns a second look on unseen training examples); the accepted ones join
        the pool."""
        parent = state.pool[parent_id]
        accepted: list[Candidate] = []
        for c in chosen:
            if any(a.val is not None and a.val >= 1.0 for a in accepted):
                c.decision, c.reason = "screened out", "a candidate validated before it scores " \
                                                       "full marks: none can beat it"
                continue
            self._check_budget()
            scores, runs = self.runs(c.spec, val, f"step {state.step}: validation")
            c.val, c.calls = float(np.mean(scores)), float(np.mean([t.calls for t in runs]))
            tie = abs(c.val - parent.mean) <= 1e-12 and \
                all(a >= b for a, b in zip(scores, parent.scores))
            if tie and (parent.dense is None or parent.calls is None):
                parent_runs = self.runs(parent.spec, val)[1]
                parent.calls = float(np.mean([t.calls for t in parent_runs]))
                parent.dense = self._dense(parent.spec, val, parent_runs)
            if tie:
                c.dense = self._dense(c.spec, val, runs)
            verdict = self.accept(scores, parent.scores, state.step, c.dense, parent.dense,
                                  c.calls if tie else None, parent.calls if tie else None)
            if verdict.promising:
                verdict = self._second_look(state, c, parent, scores, train, used, verdict)
            c.reason, c.decision = verdict.reason, "accepted" if verdict.accepted else "rejected"
            if verdict.accepted:
                state.pool.append(PoolEntry(spec=c.spec, scores=scores, dense=c.dense,
                                            calls=c.calls, parent=parent_id, step=state.step,
                                            source=c.source))
                accepted.append(c)
        return accepted

    def _second_look(self, state: TrainState, c: Candidate, parent: PoolEntry,
                     scores: list[float], train: list[Example], used: set[str],
                     first: Verdict) -> Verdict:
        """A gain that is there but not yet significant: score the candidate and its parent on
        up to ``evidence`` training examples that took no part in proposing, picking or
        screening it, and decide on validation and those together (alpha spent over the two
        looks)."""
        rng = np.random.default_rng([self.config.seed, 11, state.step])
        extra = unseen(train, used | set(c.seen), c.spec, self.config.evidence, rng)
        if not extra:
            return first._replace(reason=f"{first.reason}; no unseen examples left for a "
                                         "second look")
        self._check_budget()
        new = self.score(c.spec, extra, f"step {state.step}: more evidence")
        old = self.score(parent.spec, extra, f"step {state.step}: more evidence (parent)")
        second = self.accept(scores + new, parent.scores + old, state.step, n_val=len(scores))
        c.evidence = Evidence(examples=[ex.id for ex in extra], candidate=float(np.mean(new)),
                              parent=float(np.mean(old)), p=second.p)
        return second._replace(
            promising=False, reason=f"{first.reason}; on {len(extra)} unseen training examples "
            f"{c.evidence.parent:.3f} -> {c.evidence.candidate:.3f}, so on validation and them "
            f"together: {second.reason}")
