"""Local search from a partial program: where the best programs found are right on some
examples only, each argument of each call in them is given, in turn, every value of its pool
(the others kept), the calls above it recomputed (the tools' results are memoized), and the
replacement that raises the score most is kept, until none does. A wrong unit read from one
phrasing of the question and right on the others is how a two- or three-argument wiring is
usually left after the best-first search; this fixes it without trying every combination."""

from __future__ import annotations

import time
from typing import Callable

from localsym.learn.synth.values import Call, Value, apply_op

PASSES = 8  # improvements kept, at most
PAIR_POOL = 16  # values per argument when two are replaced together


def slots(v: Value) -> list[tuple[Call, int]]:
    """Every (call, argument index) in ``v``'s tree of calls, the outermost first."""
    if v.call is None:
        return []
    out = [(v.call, i) for i in range(len(v.call.args))]
    for _, w in v.call.args:
        out += slots(w)
    return out


def replaced(v: Value, call: Call, index: int, new: Value,
             recompute: Callable[[Call], Value | None]) -> Value | None:
    """``v`` with argument ``index`` of ``call`` replaced by ``new``, every call above it
    recomputed (None where a call then gives nothing)."""
    if v.call is None:
        return v
    if v.call is call:
        args = list(call.args)
        args[index] = (args[index][0], new)
    else:
        args = []
        for a, w in v.call.args:
            inner = replaced(w, call, index, new, recompute)
            if inner is None:
                return None
            args.append((a, inner))
        if all(x is y for (_, x), (_, y) in zip(args, v.call.args)):
            return v
    fresh = recompute(Call(v.call.tool, tuple(args)))
    if fresh is None:
        return None
    for op in v.via:
        fresh = fresh.then(op, apply_op(op, fresh.vec))
    return fresh


def refine(start: Value, score: Callable[[Value], float], pool: Callable[[Call, int], list],
           recompute: Callable[[Call], Value | None], deadline: float,
           budget: int) -> tuple[Value, int]:
    """The best value local search reaches from ``start`` (``score``: its score as the
    output; ``pool(call, i)``: the values argument ``i`` of ``call`` may take), and the
    replacements it tried (at most ``budget``)."""
    best, best_score, tried = start, score(start), 0
    for _ in range(PASSES):
        if best_score >= 1.0:
            break
        improved = False
        for call, i in slots(best):
            for new in pool(call, i):
                if tried >= budget or time.monotonic() >= deadline:
                    return best, tried
                if new is call.args[i][1]:
                    continue
                tried += 1
                candidate = replaced(best, call, i, new, recompute)
                if candidate is None:
                    continue
                s = score(candidate)
                if s > best_score + 1e-9:
                    best, best_score, improved = candidate, s, True
                    break  # the tree changed: its slots are read again
            if improved:
                break
        if not improved:
            pair, n = _pairs(best, best_score, score, pool, recompute, deadline, budget - tried)
            tried += n
            if pair is None:
                break
            best, best_score = pair, score(pair)
    return best, tried


def _pairs(best: Value, best_score: float, score: Callable[[Value], float],
           pool: Callable[[Call, int], list], recompute: Callable[[Call], Value | None],
           deadline: float, budget: int) -> tuple[Value | None, int]:
    """Two arguments of one call replaced together (a plateau one replacement cannot leave:
    the unit and the unit it converts to, each right on the examples the other is wrong on);
    the first pair that raises the score, and the replacements tried."""
    tried = 0
    for call, i in slots(best):
        for call2, j in slots(best):
            if call2 is not call or j <= i:
                continue
            for a in pool(call, i)[:PAIR_POOL]:
                first = replaced(best, call, i, a, recompute) if a is not call.args[i][1] \
                    else best
                if first is None:
                    continue
                inner = _same_call(first, call, i)
                for b in pool(call, j)[:PAIR_POOL]:
                    if tried >= budget or time.monotonic() >= deadline or inner is None:
                        return None, tried
                    tried += 1
                    candidate = replaced(first, inner, j, b, recompute)
                    if candidate is not None and score(candidate) > best_score + 1e-9:
                        return candidate, tried
    return None, tried


def _same_call(v: Value, old: Call, i: int) -> Call | None:
    """The call of ``v``'s tree that took ``old``'s place (its other arguments the same)."""
    if v.call is None:
        return None
    if v.call.tool == old.tool and all(a == b for (a, _), (b, _) in zip(v.call.args, old.args)) \
            and all(x is y for k, ((_, x), (_, y)) in enumerate(zip(v.call.args, old.args))
                    if k != i):
        return v.call
    for _, w in v.call.args:
        found = _same_call(w, old, i)
        if found is not None:
            return found
    return None

