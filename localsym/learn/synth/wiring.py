"""Arguments wired by search, not by a truncated product.

For a tool of k required arguments, each argument has a pool of values its annotation admits,
ranked (``rank``): cheap values first, an item of a list cheaper than a count or a length, a
token cut by its class or context (the first number, the word after it) cheaper than one at a
place that happens to fit, a value whose context names the argument (``units of X`` for
``to_unit``) cheaper still. The
assignments are enumerated best-first over the pools (``assignments``): first the ones that take
the items of one list in order across the arguments of a type, then the rest by their summed
rank, where two arguments given the same value, or items of one list out of order, cost more.
The names and the order only order the search; the tool's results on the data decide."""

from __future__ import annotations

import heapq
import re
from typing import Any, Iterator

from localsym.agent.glue import Findall, Item, Regex
from localsym.learn.synth.menu import key_of
from localsym.learn.synth.values import Value

SAME_VALUE = 3000  # two arguments given the same value
OUT_OF_ORDER = 1500  # items of one list given to arguments in the other order
IN_ORDER = 400  # items of one list given in order, next to each other
NAMED = 800  # the value's context names the argument
LISTED = 600  # an item of a list (a number of a text, a word...) over a length or a count
CONSTANT = 3000  # a value that is the same on every example (constants are offered apart)
FEW = 700  # a value with two distinct entries over many examples (the words of two phrasings)
KEYED = 3000  # the value is read by a key that is the argument's name
CONSTS = 16  # constants of its pool an argument no list fills is tried with
DIVERSE = 800  # at most, for a short value that differs on every example (a unit, a name)
CONTEXT = 800  # a token cut by its class or its context (the first number, the word after it)


def rank(value: Value, arg: str, texts: list[str]) -> int:
    """The rank of ``value`` as argument ``arg``: its cost, less the bonuses (an item of a list,
    a context that names the argument); ``texts``: the source texts of the first examples."""
    r = value.cost
    distinct = len({e for e in value.vec if e is not None})
    if distinct <= 1:
        r += CONSTANT
    elif distinct == 2 and value.defined >= 8:
        r += FEW
    entries = [str(e) for e in value.vec if e is not None and not isinstance(e, tuple)]
    if entries and sum(map(len, entries)) <= 30 * len(entries):
        r -= DIVERSE * distinct // max(1, value.defined)
    if value.via and isinstance(value.via[-1], Item):
        r -= LISTED
    if named(value, arg, texts):
        r -= NAMED
    if any(key_of(op) == arg.lower() for op in value.via):
        r -= KEYED  # read from the text by the argument's own name (``qty=3`` for qty)
    if by_context(value):
        r -= CONTEXT  # over a token at a place that happens to fit (``split | item(7)``)
    return r


def by_context(value: Value) -> bool:
    """Whether ``value`` is a capture by token class or context, taken as its first or last
    match (``findall(NUM \\s+ (TOKEN)) | item(0)``: the token after the first number), not by
    its place among many."""
    via = value.via
    for i, op in enumerate(via):
        if isinstance(op, (Findall, Regex)) and op.group:
            after = via[i + 1] if i + 1 < len(via) else None
            return isinstance(op, Regex) or (isinstance(after, Item) and after.index in (0, -1))
    return False


def _tokens(name: str) -> list[str]:
    parts = re.split(r"[_\W]+|(?<=[a-z])(?=[A-Z])", name)
    return [p.lower() for p in parts if len(p) >= 3]


def _alike(a: str, b: str) -> bool:
    return a == b or (len(a) >= 4 and len(b) >= 4 and (a.startswith(b[:4]) or b.startswith(a[:4])))


def named(value: Value, arg: str, texts: list[str]) -> bool:
    """Whether the argument's name appears beside the value: in a literal of its glue (``units
    of``), or as the word before or after it in the source texts (``3 hours``, words of three
    letters or more) on most examples."""
    tokens = _tokens(arg)
    literals = re.findall(r"[A-Za-z]{3,}", " ".join(
        re.sub(r"\\[a-zA-Z]|\[[^\]]*\]|\(\?[^)]*\)", " ", str(getattr(op, "pattern", "")))
        for op in value.via))
    if any(_alike(t, w.lower()) for t in tokens for w in literals):
        return True
    if value.source is None or not texts:
        return False
    hits = 0
    for entry, text in zip(value.vec, texts):
        part = str(entry) if entry is not None and not isinstance(entry, tuple) else ""
        at = text.find(part) if part and len(part) <= 40 and part != text else -1
        if at < 0:
            continue
        near = re.findall(r"[A-Za-z]{3,}", text[:at])[-1:] + \
            re.findall(r"[A-Za-z]{3,}", text[at + len(part):])[:1]
        hits += any(_alike(t, w.lower()) for t in tokens for w in near)
    return hits * 2 > len(texts)


def _list_item(v: Value) -> tuple[Any, int] | None:
    """(the list it is an item of, the index) for ``list | item(k)``, else None."""
    if v.via and isinstance(v.via[-1], Item) and v.via[-1].index >= 0:
        return (v.source, v.const, id(v.call), v.via[:-1]), v.via[-1].index
    return None


def penalty(values: tuple[Value, ...]) -> int:
    """What an assignment costs beyond its values' ranks: the same value twice, items of one
    list out of order (and a bonus for items next to each other in order)."""
    cost = 0
    for i, a in enumerate(values):
        for b in values[i + 1:]:
            if a is b or a.vec == b.vec:
                cost += SAME_VALUE
            la, lb = _list_item(a), _list_item(b)
            if la and lb and la[0] == lb[0]:
                cost += OUT_OF_ORDER if la[1] > lb[1] else (-IN_ORDER if lb[1] == la[1] + 1
                                                            else 0)
    return cost


def in_order(pools: list[list[tuple[int, Value]]], groups: list[Any]
             ) -> list[tuple[Value, ...]]:
    """Assignments that take the items of one list in order across the arguments of one group
    (``groups``: each argument's annotation) whose pools hold them (the numbers of a word
    problem, the words after them, the parts of a text); the other arguments take the list's
    items in order too where another group's list fits them, else their best value, then each
    constant of their pool (a count, a period the tool takes that no row shows)."""
    groups = ["number" if g in (int, float) else g for g in groups]
    families: dict[Any, dict[int, dict[int, Value]]] = {}
    for a, pool in enumerate(pools):
        for _, v in pool:
            li = _list_item(v)
            if li is not None:
                families.setdefault((li[0], groups[a]), {}).setdefault(a, {})[li[1]] = v
    runs: dict[Any, list[dict[int, Value]]] = {}
    for (_, group), family in families.items():
        args = sorted(family)
        for start in range(3):
            chosen: dict[int, Value] = {}
            k = start
            for a in args:
                if k in family[a]:
                    chosen[a] = family[a][k]
                    k += 1
            if chosen and (len(chosen) >= 2 or len(args) == 1):
                runs.setdefault(group, []).append(chosen)
    out = []
    order = list(dict.fromkeys(groups))
    for choice in _combinations([runs.get(g, [{}]) for g in order], 24):
        merged = {a: v for part in choice for a, v in part.items()}
        if len(merged) < 2:
            continue
        rest = [[{a: pools[a][0][1]}] + [{a: v} for _, v in pools[a][1:] if v.static][:CONSTS]
                for a in range(len(pools)) if a not in merged]
        for fill in _combinations(rest, 24):
            both = {**merged, **{a: v for part in fill for a, v in part.items()}}
            out.append(tuple(both[a] for a in range(len(pools))))
    return out


def _combinations(options: list[list[dict]], limit: int) -> list[tuple[dict, ...]]:
    """Up to ``limit`` picks of one option per group, the first options first."""
    picks: list[tuple[dict, ...]] = [()]
    for opts in options:
        picks = [p + (o,) for p in picks for o in opts][:limit]
    return picks


class Nogoods:
    """Argument values the tool refuses: a value its errors name (``unknown unit 'of'``) in
    ``after`` assignments that failed, and never in one that worked, is dropped from every
    assignment after, whatever the other arguments are."""

    def __init__(self, after: int = 2):
        self.after = after
        self.failed: dict[tuple[int, int], int] = {}
        self.worked: set[tuple[int, int]] = set()

    def record(self, assignment: tuple[Value, ...], ok: bool, blamed: set[int]) -> None:
        for a, v in enumerate(assignment):
            key = (a, id(v))
            if ok:
                self.worked.add(key)
            elif a in blamed:
                self.failed[key] = self.failed.get(key, 0) + 1

    def banned(self, assignment: tuple[Value, ...]) -> bool:
        return any((a, id(v)) not in self.worked and self.failed.get((a, id(v)), 0) >= self.after
                   for a, v in enumerate(assignment))


def blamed(failures: list[tuple[str, tuple]]) -> set[int]:
    """The argument every failure's error names: in each (error, argument values), exactly one
    argument's value appears quoted in the error (an error that names several, or none, blames
    no one)."""
    out: set[int] | None = None
    for error, values in failures:
        here = {a for a, e in enumerate(values) if len(str(e)) >= 2 and
                (repr(str(e)) in error or f'"{e}"' in error)}
        if len(here) != 1:
            return set()
        out = here if out is None else out & here
    return out or set()


def assignments(pools: list[list[tuple[int, Value]]], groups: list[Any], limit: int,
                nogoods: Nogoods | None = None) -> Iterator[tuple[Value, ...]]:
    """Up to ``limit`` assignments of one value per pool (each pool ranked, best first;
    ``groups``: each argument's annotation): the in-order ones, then best-first by summed rank
    plus ``penalty``; each once, none that ``nogoods`` has banned."""
    nogoods = nogoods or Nogoods(after=10 ** 9)
    if not pools or any(not p for p in pools):
        return
    done: set[tuple[int, ...]] = set()
    alike: set[tuple] = set()  # the argument values, row by row, of the assignments given
    given = 0
    index = {a: {id(v): i for i, (_, v) in enumerate(p)} for a, p in enumerate(pools)}
    for seed in sorted(in_order(pools, groups), key=lambda s: penalty(s) + sum(
            pools[a][index[a][id(v)]][0] for a, v in enumerate(s))):
        key = tuple(index[a][id(v)] for a, v in enumerate(seed))
        if key not in done and not nogoods.banned(seed) and _new(seed, alike):
            done.add(key)
            given += 1
            yield seed
            if given >= limit:
                return

    def score(key: tuple[int, ...]) -> int:
        return sum(pools[a][i][0] for a, i in enumerate(key)) + \
            penalty(tuple(pools[a][i][1] for a, i in enumerate(key)))

    start = (0,) * len(pools)
    heap = [(score(start), start)]
    pushed = {start}
    pops = 0
    while heap and given < limit and pops < 50 * limit:
        pops += 1
        _, key = heapq.heappop(heap)
        for a in range(len(pools)):
            if key[a] + 1 < len(pools[a]):
                nxt = key[:a] + (key[a] + 1,) + key[a + 1:]
                if nxt not in pushed:
                    pushed.add(nxt)
                    heapq.heappush(heap, (score(nxt), nxt))
        chosen = tuple(pools[a][i][1] for a, i in enumerate(key))
        if key in done or nogoods.banned(chosen) or not _new(chosen, alike):
            continue
        done.add(key)
        given += 1
        yield chosen


def _new(chosen: tuple[Value, ...], alike: set[tuple]) -> bool:
    """Whether no assignment given before has the same values on every row (two programs
    equal on the rows make the same calls): recorded as given."""
    vecs = tuple(v.vec for v in chosen)
    if vecs in alike:
        return False
    alike.add(vecs)
    return True
