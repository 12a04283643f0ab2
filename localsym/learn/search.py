"""The search a step runs over candidates: the pool, its per-example Pareto front, screening on
a minibatch, and the gate.

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
from localsym.learn.events import CandidateRecord, Decision
from localsym.learn.loss import answer_text
from localsym.learn.propose.merge import merge


class Candidate(CandidateRecord):
    """One proposed change of the parent, and what the search made of it."""

    spec: PipelineSpec
    seen: list[str] = []  # training examples it was found on (never its further evidence)

    def summary(self) -> CandidateRecord:
        """The candidate as the event log keeps it (the spec itself is kept for accepted ones)."""
        return CandidateRecord.model_validate(self.model_dump(exclude={"spec", "seen"}))


class PoolEntry(BaseModel):
    """An agent in the pool: its spec, its per-example validation scores, where it came from."""

    spec: PipelineSpec
    scores: list[float]
    dense: float | None = None
    calls: float | None = None  # model calls per validation example, once measured
    parent: int | None = None
    step: int = 0
    source: str = "start"

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


class Verdict(NamedTuple):
    """The gate's answer: accepted or not, why, and whether the gain is there but not yet
    significant (more evidence may decide: ``promising``)."""

    accepted: bool
    reason: str
    promising: bool = False
    p: float | None = None  # the paired test's p-value, where it ran


def gate(new: list[float], old: list[float], min_gain: float = 0.0,
         dense_new: float | None = None, dense_old: float | None = None,
         alpha: float | None = None, seed: int = 0, calls_new: float | None = None,
         calls_old: float | None = None) -> Verdict:
    """Accept only on evidence: a mean gain above ``min_gain`` (strict), or the same per-example
    scores or better everywhere with an equal mean and a tie-break that never buys cost (fewer
    model calls per example; or as many and a higher dense score); with ``alpha``, a gain must
    also pass the paired sign-flip test at that level (a few examples of gain on a small
    validation split are noise)."""
    gain = float(np.mean(new) - np.mean(old))
    if gain > min_gain + 1e-12:
        why = f"validation gain {gain:+.3f}"
        if alpha is None:
            return Verdict(True, why)
        p = permutation_p_value(new, old, seed=seed)
        if p >= alpha:
            return Verdict(False, f"{why}, but no significant gain (paired test p={p:.3f} >= "
                                  f"{alpha:g})", promising=True, p=p)
        return Verdict(True, f"{why}, p={p:.3f}", p=p)
    return Verdict(*_tie(new, old, gain, min_gain, dense_new, dense_old, calls_new, calls_old))


def _tie(new: list[float], old: list[float], gain: float, min_gain: float,
         dense_new: float | None, dense_old: float | None, calls_new: float | None,
         calls_old: float | None) -> tuple[bool, str]:
    lost = int(sum(a < b for a, b in zip(new, old)))
    if abs(gain) <= 1e-12 and not lost and calls_new is not None and calls_old is not None:
        if calls_new > calls_old + 1e-9:
            return False, f"validation equal, but more model calls per example " \
                          f"({calls_old:.2f} -> {calls_new:.2f}): a tie never buys cost"
        if calls_new < calls_old - 1e-9:
            return True, f"validation equal, no example lost, fewer model calls per example " \
                         f"({calls_old:.2f} -> {calls_new:.2f})"
    if abs(gain) <= 1e-12 and not lost and dense_new is not None and dense_old is not None \
            and dense_new > dense_old + 1e-9:
        return True, f"validation equal, no example lost, dense score {dense_old:.3f} -> " \
                     f"{dense_new:.3f}"
    if gain < -1e-12:
        return False, f"validation dropped by {-gain:.3f}"
    if gain <= min_gain and gain > 1e-12:
        return False, f"gain {gain:+.3f} not above min_gain {min_gain}"
    return False, "no gain on validation" + (f" ({lost} example(s) lost)" if lost else "")


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


def permutation_p_value(new: list[float], old: list[float], seed: int = 0,
                        rounds: int = 4000) -> float:
    """One-sided paired sign-flip test: the chance of a mean improvement at least this large if
    the update changed nothing."""
    d = np.asarray(new) - np.asarray(old)
    if not d.any():
        return 1.0
    flips = np.random.default_rng(seed).choice([-1.0, 1.0], size=(rounds, d.size))
    return float(((flips * d).mean(axis=1) >= d.mean()).mean())


def merge_best(spec: PipelineSpec, eligible: list[Candidate], tried: list[str]
               ) -> Candidate | None:
    """The two best screened candidates from different sources, together (GEPA's merge), if
    they combine and the result was never tried (its key is added to ``tried``)."""
    ranked = sorted(eligible, key=lambda c: -(c.minibatch or 0.0))
    for i, a in enumerate(ranked):
        for b in ranked[i + 1:]:
            if a.source == b.source:
                continue
            new = merge(spec, a.spec, b.spec)
            key = spec_key(new) if new is not None else None
            if key is not None and key not in tried:
                tried.append(key)
                return Candidate(source="merge", spec=new, edits=a.edits + b.edits)
    return None


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
            refused.append(f"{c.source}: {'; '.join(c.edits)}: changes the final outputs "
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
