"""The search a step runs over candidates: the pool, its per-example Pareto front, the
minibatch, which candidates a step admits, merges. Screening and validation are in
``learn/screen.py``, the gate in ``learn/gate.py``.

An optimizer's text is a proposal, never a verdict: every candidate (one atomic edit or one
coherent group, from one source) is scored on data. A step screens its candidates on a small
minibatch of training examples (favouring the ones the parent fails), scores the best few on the
whole validation split, and accepts a candidate only on evidence: a strict gain over its parent,
or an equal score with no example lost and a higher dense score (the log-probability of the gold
answers). Accepted candidates join the pool; each step's parent is drawn from the pool's
per-example Pareto front (GEPA), so a candidate that is best on some examples keeps a chance
even when its mean is not the highest.
"""

from __future__ import annotations

import hashlib
import json
from typing import NamedTuple

import numpy as np
from pydantic import BaseModel

from localsym.agent.spec import PipelineSpec
from localsym.learn.edits import Edit, apply_edits, edit_text
from localsym.learn.events import CandidateDecision, CandidateRecord, Decision
from localsym.learn.loss import answer_text


class Candidate(CandidateRecord):
    """One proposed change of the parent: its parent plus its typed edits (``spec``, made by
    ``Candidate.of``), and what the search made of it."""

    spec: PipelineSpec
    seen: list[str] = []  # training examples it was found on (never its further evidence)

    @classmethod
    def of(cls, parent: PipelineSpec, source: str, edits: list[Edit], **fields) -> "Candidate":
        """The candidate ``edits`` make of ``parent`` (an EditError if they cannot apply)."""
        return cls(source=source, edits=list(edits), spec=apply_edits(parent, edits), **fields)

    def decide(self, decision: CandidateDecision, reason: str) -> None:
        """What the search made of it (the one place a candidate's decision is set)."""
        self.decision, self.reason = decision, reason

    def summary(self) -> CandidateRecord:
        """The candidate as the event log keeps it (the spec itself is kept for accepted ones)."""
        return CandidateRecord.model_validate(self.model_dump(exclude={"spec", "seen"}))

    def text(self) -> str:
        return "; ".join(edit_text(e) for e in self.edits)


class PoolEntry(BaseModel):
    """An agent in the pool: its spec, its per-example validation scores, where it came from."""

    spec: PipelineSpec
    scores: list[float]
    dense: float | None = None
    calls: float | None = None  # model calls per validation example, once measured
    tokens: float | None = None  # their prompt and answer tokens per example, once measured
    seconds: float | None = None  # wall seconds per example when measured (never decides)
    parent: int | None = None
    step: int = 0
    source: str = "start"

    @classmethod
    def of(cls, c: "Candidate", scores: list[float], parent: int, step: int) -> "PoolEntry":
        """An accepted candidate as it joins the pool."""
        return cls(spec=c.spec, scores=scores, dense=c.dense, calls=c.calls, tokens=c.tokens,
                   seconds=c.seconds, parent=parent, step=step, source=c.source)

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores)) if self.scores else 0.0


def spec_key(spec: PipelineSpec) -> str:
    """A stable identity of a spec (to skip a candidate already tried)."""
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:16]


def best_index(pool: list[PoolEntry]) -> int:
    """The entry with the highest mean validation score; on a tie, the higher dense score, then
    the earliest."""
    return max(range(len(pool)), key=lambda i: (pool[i].mean, dense_rank(pool[i].dense), -i))


def cheapest_near_best(pool: list[PoolEntry]) -> int:
    """Among the entries whose mean validation score is within one validation example of the
    best, the cheapest per example (model calls, then tokens; an unmeasured cost counts as
    the dearest); on a tie, the best of them."""
    b = best_index(pool)
    n = max(1, len(pool[b].scores))
    near = [i for i in range(len(pool)) if pool[i].mean >= pool[b].mean - 1.0 / n - 1e-12]

    def cost(i: int) -> tuple:
        e = pool[i]
        return (np.inf if e.calls is None else e.calls, np.inf if e.tokens is None else e.tokens,
                -e.mean, -dense_rank(e.dense), i)
    return min(near, key=cost)


def final_pick(pool: list[PoolEntry], how: str) -> tuple[int, str | None]:
    """The pool entry a run ends with: the best-scoring one (``how`` "best"), or the cheapest
    near it (``cheapest_near_best``); and a line saying so where the two differ."""
    best = best_index(pool)
    b = cheapest_near_best(pool) if how == "cheapest" else best
    if b == best:
        return b, None
    e, top = pool[b], pool[best]

    def calls(p: PoolEntry) -> str:
        return "?" if p.calls is None else f"{p.calls:g}"
    return b, (f"kept the agent of step {e.step} ({e.mean:.3f} on validation, {calls(e)} calls "
               f"per example) over the best-scoring one of step {top.step} ({top.mean:.3f}, "
               f"{calls(top)} calls): within one validation example of it and cheaper "
               "(train.pick: best keeps the best-scoring)")


def cost_front(pool: list[PoolEntry]) -> list[int]:
    """The pool's Pareto front over (validation score, cost per example): the entries no other
    entry matches or beats on score while costing no more model calls and no more tokens (and
    less of one, or a higher score). An unmeasured cost counts as the dearest. In pool order."""
    def cost(e: PoolEntry) -> tuple[float, float]:
        return (np.inf if e.calls is None else e.calls, np.inf if e.tokens is None else e.tokens)

    def dominates(a: PoolEntry, b: PoolEntry) -> bool:
        (ca, ta), (cb, tb) = cost(a), cost(b)
        return a.mean >= b.mean - 1e-12 and ca <= cb and ta <= tb and \
            (a.mean > b.mean + 1e-12 or ca < cb or ta < tb)
    return [i for i, e in enumerate(pool) if not any(dominates(o, e) for o in pool)]


class FrontPoint(BaseModel):
    """An agent on the pool's (score, cost) Pareto front, as a run's summary keeps it."""

    step: int
    source: str
    val: float
    calls: float | None = None
    tokens: float | None = None


def front_points(pool: list[PoolEntry]) -> list[FrontPoint]:
    """The pool's (score, cost) Pareto front, rounded for reading."""
    return [FrontPoint(step=e.step, source=e.source, val=round(e.mean, 4),
                       calls=None if e.calls is None else round(e.calls, 3),
                       tokens=None if e.tokens is None else round(e.tokens, 1))
            for e in (pool[i] for i in cost_front(pool))]


def dense_rank(dense: float | None) -> float:
    """A dense score for ordering: a missing one ranks below every measured one."""
    return -np.inf if dense is None else dense


def pareto_front(pool: list[PoolEntry]) -> dict[int, int]:
    """Entry -> on how many validation examples it reaches the best score of the pool, for the
    entries not dominated by another (GEPA's per-example Pareto front)."""
    scores = np.asarray([e.scores for e in pool])
    top = scores.max(axis=0)
    wins = {i: int((scores[i] >= top).sum()) for i in range(len(pool))}
    front = {}
    for i, w in wins.items():
        if not w:
            continue
        dominated = any(j != i and (scores[j] >= scores[i]).all() and (scores[j] > scores[i]).any()
                        for j in wins)
        if not dominated:
            front[i] = w
    return front or {best_index(pool): 1}


def sample_parent(pool: list[PoolEntry], rng: np.random.Generator) -> int:
    """A parent from the Pareto front, with probability in proportion to its wins."""
    front = pareto_front(pool)
    ids = sorted(front)
    weights = np.asarray([front[i] for i in ids], dtype=float)
    return int(ids[rng.choice(len(ids), p=weights / weights.sum())])


def unseen(examples: list, used: set[str], spec: PipelineSpec, limit: int,
           rng: np.random.Generator) -> list:
    """Up to ``limit`` of ``examples`` that took no part in proposing, picking or screening a
    candidate (ids not in ``used``, inputs not shown as a demonstration in ``spec``), in a
    seeded order: the further evidence a promising gain earns."""
    shown = {json.dumps(d.inputs, sort_keys=True, default=str)
             for n in spec.nodes for d in n.demonstrations}
    fresh = [ex for ex in examples if ex.id not in used and
             json.dumps(ex.inputs, sort_keys=True, default=str) not in shown]
    return [fresh[i] for i in rng.permutation(len(fresh))][:limit]


def minibatch(train_ids: list[str], failed: list[str], size: int,
              rng: np.random.Generator) -> list[str]:
    """``size`` training example ids for screening: up to half of them the parent's failures
    (the examples a candidate must fix), the rest others in a seeded order (where a candidate
    must not break what works)."""
    out = list(dict.fromkeys(failed))[:max(1, size // 2)]
    rest = [i for i in (train_ids[j] for j in rng.permutation(len(train_ids))) if i not in out]
    return out + rest[:size - len(out)]


def dense_target(spec: PipelineSpec, expected: dict) -> str | None:
    """The text whose log-probability is the dense score of an example: the expected outputs in
    the format the final node answers in (``finish`` for a node with tools), or None when the
    answer is bound to a tool result (nothing for the model to be likely about)."""
    node = spec.final_node()
    if not any(f.name in expected for f in node.outputs):
        return None
    return answer_text(node.model_dump(mode="json"), expected)


def admit(spec: PipelineSpec, proposed: list[Candidate], tried: list[str], limit: int
          ) -> tuple[list[Candidate], list[str]]:
    """The candidates a step screens, in proposal order: at most ``limit``, none screened
    before (their keys are added to ``tried``), none that changes the agent's final outputs
    (refused, with the reason)."""
    finals, seen = spec.final_outputs(), set(tried)
    out: list[Candidate] = []
    refused: list[str] = []
    for c in proposed:
        key = spec_key(c.spec)
        if c.spec.final_outputs() != finals:
            refused.append(f"{c.source}: {c.text()}: changes the final outputs "
                           f"{finals} -> {c.spec.final_outputs()}")
        elif key not in seen and len(out) < limit:
            seen.add(key)
            tried.append(key)
            out.append(c)
    return out, refused


class StepDecision(NamedTuple):
    """What a step decided, as its event records it."""

    decision: Decision
    val_after: float | None
    reason: str
    proposed_spec: dict | None = None  # the accepted candidate's, or the best rolled back


def decision(candidates: list[Candidate], accepted: list[Candidate], top: Candidate | None,
             before: float) -> StepDecision:
    """A step's decision for its event: accepted (the best accepted candidate), rolled back
    (validated, none accepted) or no change (none got past screening)."""
    validated = [c for c in candidates if c.val is not None]
    if top is not None:
        return StepDecision("accepted", top.val, "; ".join(c.reason for c in accepted),
                            top.spec.model_dump(mode="json"))
    if validated:
        return StepDecision("rolled back", max(c.val or 0.0 for c in validated),
                            validated[0].reason, validated[0].spec.model_dump(mode="json"))
    return StepDecision("no change", before, "no candidate beat the parent on the minibatch"
                        if candidates else "no candidate proposed")
