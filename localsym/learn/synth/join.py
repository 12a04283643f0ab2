"""An answer written as parts one after the other (FlashFill's concatenation of atomic
expressions): on every row, the answer is cut into parts, each the entry of one value on that
row (an input or a cut of it, a constant the answers share, a tool's result, any value the bank
keeps). The cheapest sequence of values that writes every answer is found by a shortest-path
search over the positions reached on each row, so ``concat(first, ' ', last | slice(end=1),
'.')`` is found without enumerating the concatenations of every size."""

from __future__ import annotations

import heapq
from itertools import count

from localsym.learn.synth.bank import apply_fn
from localsym.agent.functions import FUNCTIONS
from localsym.learn.synth.values import Value, fn_result

EXPANSIONS = 20_000  # states a search may expand
PER_KEY = 24  # values tried for one part of the first row


def join(pieces: list[tuple[Value, int]], answers: tuple[str, ...], rows: int,
         max_parts: int) -> Value | None:
    """The cheapest concatenation of values that writes ``answers`` on the rows of the mask
    ``rows`` (None: none within ``max_parts`` parts)."""
    idx = [i for i in range(len(answers)) if rows >> i & 1]
    if not idx:
        return None
    first = idx[0]
    index: dict[str, list[Value]] = {}
    for v, mask in pieces:
        if mask & rows == rows:
            bucket = index.setdefault(v.vec[first], [])
            if len(bucket) < PER_KEY:
                bucket.append(v)
    goal = tuple(len(answers[i]) for i in idx)
    start = tuple(0 for _ in idx)
    tie = count()
    # a path's cost: the sizes of its parts, then what they assume (of two cuts alike in size,
    # the one with the shorter text: before(' ') over strip_suffix(' Kirkland'))
    heap: list = [((0, 0), next(tie), start, ())]
    best: dict[tuple, tuple[int, int]] = {start: (0, 0)}
    for _ in range(EXPANSIONS):
        if not heap:
            return None
        cost, _, at, parts = heapq.heappop(heap)
        if at == goal:
            return _concat(parts) if parts else None  # empty answers: a constant gives them
        if cost > best.get(at, cost) or len(parts) >= max_parts:
            continue
        head = answers[first][at[0]:]
        for j in range(len(head) + 1):
            for v in index.get(head[:j], ()):
                nxt = _advance(v, idx, answers, at)
                if nxt is None or nxt == at:
                    continue
                c = (cost[0] + v.level + (1 if parts else 0), cost[1] + v.cost)
                if nxt not in best or c < best[nxt]:
                    best[nxt] = c
                    heapq.heappush(heap, (c, next(tie), nxt, parts + (v,)))
    return None


def _advance(v: Value, idx: list[int], answers: tuple[str, ...], at: tuple) -> tuple | None:
    out = []
    for i, p in zip(idx, at):
        e = v.vec[i]
        if not answers[i].startswith(e, p):
            return None
        out.append(p + len(e))
    return tuple(out)


def _concat(parts: tuple[Value, ...]) -> Value:
    """The parts as one value: ``concat`` nested to the right."""
    out = parts[-1]
    for v in reversed(parts[:-1]):
        out = fn_result("concat", (v, out), apply_fn(FUNCTIONS["concat"].fast, [v.vec, out.vec]))
    return out
