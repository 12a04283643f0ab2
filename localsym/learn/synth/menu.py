"""The operations worth trying on a value, their parameters induced from what it gives on the
training examples: cuts at a prefix, suffix or delimiter every entry shares, captures in the
context of a token (the word after ``units of``, the number before ``days``: FlashFill's
positions by token classes), the numbers, words or parts of a text, items of a list, its
order, sum, count and joins, parses and roundings. Each menu is bounded; no model, no tool."""

from __future__ import annotations

import os
import re
from typing import Any

from localsym.agent import glue
from localsym.agent.glue import (After, Before, Case, Chars, Count, Findall, Item, Join, Keep,
                                 Length, Numbers, Op, Product, Regex, Reverse, Round, Slice, Sort,
                                 Split, StripPrefix, StripSuffix, Sum, ToFloat, ToInt, Trim,
                                 Unique, Words)

MAX_DELIMITERS = 12
MAX_CONTEXTS = 40
MAX_INDEX = 12  # items of a list tried by position
SAMPLE = 12  # entries a menu is induced from
SCAN = 400  # characters of an entry a delimiter is sought in
SEPARATORS = (",", ", ", ";", "\n", "|", "/", "-", ":", "\t")
JOINS = (" ", "", ", ", ",", "\n", "-", "/", ":", ".", "_")
# token classes, most specific first: a number, a word, a token with inner marks (light-years^2)
NUM, WORD, TOKEN = r"-?\d+(?:\.\d+)?", r"[A-Za-z]+", r"[\w^'-]*\w[\w^'-]*"
_NUM_RE, _WORD_RE = re.compile(NUM), re.compile(WORD)
# a whole token: after white space (or at the start), before white space, a mark or the end
_START, _END = r"(?<!\S)", r"(?=[\s,.;:!?)\]\"']|$)"
_CLASSES = re.compile("|".join(re.escape(c) for c in (_START, _END, NUM, WORD, TOKEN, r"\s+",
                                                       r"\s*")))


# What a kind of step assumes (1000: a cut, an item, a parse; more: a step a person writes
# rarely, so that of two values alike on the data the plainer program is kept).
WEIGHTS = {"item": 500, "regex": 1500, "findall": 1500, "int": 900, "float": 900, "join": 1100,
           "case": 1100, "round": 1100, "slice": 1200,
           "chars": 1200, "keep": 1200, "sort": 1300, "reverse": 1300, "unique": 1300,
           "sum": 1300, "product": 1300, "count": 1500, "length": 1500}


# The size an operation adds to a program (the enumeration goes size by size): a cut, an item,
# a parse 1; an operation a person writes rarely (an order statistic, a pattern) 2, so that of
# two programs alike on the data the plainer is found first.
LEVELS = {"regex": 2, "findall": 2, "chars": 2, "keep": 2, "sort": 2, "reverse": 2,
          "unique": 2, "sum": 2, "product": 2, "count": 2, "length": 2, "round": 2,
          "format": 2, "map": 2}
_MADE: dict[tuple, Op] = {}


def make(cls: type, **params: Any) -> Op:
    """The operation ``cls(**params)``, built (and validated) once per process."""
    key = (cls, tuple(sorted(params.items())))
    op = _MADE.get(key)
    if op is None:
        if len(_MADE) >= 100_000:
            _MADE.clear()
        op = _MADE[key] = cls(**params)
    return op


def op_level(op: Op) -> int:
    return LEVELS.get(op.op, 1)  # type: ignore[attr-defined]


def op_cost(op: Op) -> int:
    """How much an operation assumes: its kind's weight, then the length of its parameters (a
    pattern's token classes and boundaries counted as one character each: what it assumes is
    its literal text)."""
    if op.op == "map":  # type: ignore[attr-defined]
        return 1000 + 300 * len(op.table)  # type: ignore[attr-defined]
    return WEIGHTS.get(op.op, 1000) + sum(  # type: ignore[attr-defined]
        len(_CLASSES.sub("C", str(v)) if k == "pattern" else str(v))
        for k, v in op.model_dump(exclude_defaults=True).items() if k != "op")


def complexity(ops: tuple) -> int:
    return sum(op_cost(op) for op in ops)


def menu(value: Any, raw: bool = False) -> list[Op]:
    """The operations worth trying on ``value`` (a ``Value``); ``raw``: it is a source as it
    is (an input, a tool's result), where captures in context are induced too."""
    entries = [e for e in value.vec if e is not None][:SAMPLE]
    if not entries:
        return []
    if all(isinstance(e, tuple) for e in entries):
        return _list_ops([list(e) for e in entries])
    if all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in entries):
        return [make(Round, digits=d) for d in range(4) if any(round(e, d) != e for e in entries)]
    texts = [str(e) for e in entries]
    return _text_ops(texts) + (contexts(texts) if raw else [])


def _text_ops(texts: list[str]) -> list[Op]:
    ops: list[Op] = []
    if any(t != t.strip() for t in texts):
        ops.append(make(Trim))
    ops += [make(Case, to=c) for c in ("lower", "upper", "title")  # type: ignore[arg-type]
            if any(getattr(t, c)() != t for t in texts)]
    ops += cuts(texts)
    if any(_NUM_RE.search(t) for t in texts):
        ops.append(make(Numbers))
    if any(_WORD_RE.search(t) for t in texts):
        ops.append(make(Words))
    ops += [make(Split)] + [make(Split, separator=s) for s in SEPARATORS
                            if all(s in t for t in texts)]
    ops += [make(Chars), make(Findall, pattern="[A-Z]"), make(Length), make(Slice, end=1),
            make(Slice, start=-1)]
    if _parse_all(texts, int):
        ops.append(make(ToInt))
    elif _parse_all(texts, float):
        ops.append(make(ToFloat))
    return ops


def _list_ops(lists: list[list[str]]) -> list[Op]:
    shortest = min(len(x) for x in lists)
    ops: list[Op] = [make(Item, index=k) for k in range(min(shortest, MAX_INDEX))]
    ops += [make(Item, index=-k) for k in (1, 2) if shortest > k]
    ops += [make(Count)] + [make(Join, separator=j) for j in JOINS]
    numeric = all(_parse_all(x, float) for x in lists if x)
    ops += [make(Sort), make(Sort, numeric=True), make(Sum), make(Product)] if numeric else \
        [make(Sort)]
    ops += [make(Reverse), make(Unique), make(Keep, pattern="[A-Z].*"), make(Keep, pattern=NUM)]
    return ops


def cuts(values: list[str]) -> list[Op]:
    """Single cuts every value allows: strip the shared prefix or suffix (at a word boundary),
    the text after or before a delimiter every value holds, a quoted part."""
    out: list[Op] = []
    prefix = _boundary(os.path.commonprefix(values), from_end=False)
    suffix = _boundary(os.path.commonprefix([v[::-1] for v in values])[::-1], from_end=True)
    if prefix and len(prefix) <= glue.MAX_PARAM and prefix not in values:
        out.append(make(StripPrefix, prefix=prefix))
    if suffix and len(suffix) <= glue.MAX_PARAM and suffix not in values:
        out.append(make(StripSuffix, suffix=suffix))
    for d in delimiters(values):
        for occurrence in ("first", "last"):
            out += [make(After, delimiter=d, occurrence=occurrence),  # type: ignore[arg-type]
                    make(Before, delimiter=d, occurrence=occurrence)]  # type: ignore[arg-type]
    for q in ('"', "'"):
        if all(v.count(q) >= 2 for v in values):
            out.append(make(Regex, pattern=f"{q}([^{q}]*){q}", group=1))
            out.append(make(Findall, pattern=f"{q}([^{q}]*){q}", group=1))
    return out


def contexts(values: list[str]) -> list[Op]:
    """Captures of a token in its context, from the first value's tokens, kept where every
    value has a match: a token of a class (number, word, token) after or before a literal word
    (``units of (\\w+)``: its first match) or a token of a class (``NUM (\\w+)``: every match,
    for an item of them)."""
    tokens = [t.strip(",.;:!?()[]{}\"'") for t in values[0].split()]
    found: dict[str, bool] = {}  # pattern -> its context is a class (not a literal word)
    for shape in (NUM, WORD):  # every whole token of a class
        if any(re.fullmatch(shape, t) for t in tokens):
            found[rf"{_START}({shape}){_END}"] = True
    for i, tok in enumerate(tokens):
        for shape in _shapes(tok) if tok else ():
            for left, is_class in _context(tokens, i - 1):
                found.setdefault(rf"{left}\s+({shape}){_END}", is_class)
                before = _context(tokens, i - 2)
                if before and not is_class and not before[0][1]:  # two words: ``units of X``
                    found.setdefault(rf"{before[0][0]}\s+{left}\s+({shape}){_END}", False)
            for right, is_class in _context(tokens, i + 1):
                found.setdefault(rf"{_START}({shape})\s+{right}", is_class)
        if len(found) >= 4 * MAX_CONTEXTS:
            break
    keys = keyed(values[0])
    for pattern in keys + token_shapes(tokens):
        found.setdefault(pattern, False)
    ops: list[Op] = []
    whole = keys + [p for p in found if p.startswith(_START + "(")]
    for pattern in list(dict.fromkeys(whole)) + sorted((p for p in found if p not in whole),
                                                        key=len):
        is_class = found[pattern]
        op = make(Findall if is_class else Regex, pattern=pattern, group=1)
        if all(_matches(op, v) for v in values):
            ops.append(op)
        if len(ops) >= MAX_CONTEXTS:
            break
    return ops


def keyed(value: str) -> list[str]:
    """The value after each key of a small table (``qty=3``, ``Width: 4``), read by its key in
    any case and with any of ``=`` or ``:`` around it, so the parts may come in any order."""
    out = []
    pairs = re.findall(r"(?<![A-Za-z])(?=([A-Za-z]\w{0,30})\s*[:=]\s*([^\s,;:=]+))", value)
    for key, val in pairs[:MAX_CONTEXTS // 2]:
        for shape in _shapes(val.strip("."))[:1]:
            out.append(KEYED_AT + rf"{re.escape(key.strip())}\s*[:=]\s*({shape})")
    return out


KEYED_AT = r"(?i)(?<!\w)"  # how a value read by its key starts (``key_of`` reads it)


def key_of(op: Op) -> str | None:
    """The key a capture reads its value by (``keyed``), lower case; None for another op."""
    pattern = getattr(op, "pattern", "")
    if not pattern.startswith(KEYED_AT):
        return None
    return re.sub(r"\\(.)", r"\1", pattern[len(KEYED_AT):].split("\\s*[:=]")[0]).lower()


def token_shapes(tokens: list[str]) -> list[str]:
    r"""A token found by its shape (a date ``\d+-\d+-\d+``, a code ``[A-Za-z]+-\d+``): its runs
    of digits and letters as classes, its marks as they are (FlashFill's token classes)."""
    out = []
    for tok in tokens:
        if re.search(r"\w", tok) and re.search(r"[^\w\s]", tok) and len(tok) <= 40:
            shape = "".join(r"\d+" if p[0].isdigit() else "[A-Za-z]+" if p[0].isalpha()
                            else re.escape(p) for p in re.findall(r"\d+|[A-Za-z]+|[^\w\s]", tok))
            out.append(rf"(?<![\w.-])({shape})(?![\w-])")
    return list(dict.fromkeys(out))


def _shapes(token: str) -> list[str]:
    if re.fullmatch(NUM, token):
        return [NUM]
    shapes = [WORD] if re.fullmatch(WORD, token) else []
    return shapes + [TOKEN] if re.fullmatch(TOKEN, token) else shapes


def _context(tokens: list[str], i: int) -> list[tuple[str, bool]]:
    """The contexts of a neighbour token: itself (a word, as a literal) or its class (a
    number)."""
    if not 0 <= i < len(tokens) or not tokens[i]:
        return []
    tok = tokens[i]
    if re.fullmatch(WORD, tok) and len(tok) <= 30:
        return [(re.escape(tok), False)]
    return [(f"{_START}{NUM}{_END}", True)] if re.fullmatch(NUM, tok) else []


def _matches(op: Op, value: str) -> bool:
    try:
        return bool(op(value))
    except glue.GlueError:
        return False


def delimiters(values: list[str]) -> list[str]:
    """Delimiters every value holds, in order of their first appearance in the first value:
    runs of punctuation and space, single marks, and a word ending in a mark (``List:``)."""
    first = values[0][:SCAN]  # a long text (a repeat) would make the word pattern quadratic
    found = re.findall(r"[^\w]+", first) + [c for c in first if not c.isalnum() and c != " "] + \
        re.findall(r"\b\w{1,40}[^\w\s]+", first)
    found = sorted(set(found), key=first.index)
    return [d for d in found if len(d) <= 40 and all(d in v for v in values)][:MAX_DELIMITERS]


def _boundary(text: str, from_end: bool) -> str:
    """A shared prefix (or suffix) cut back to whitespace, so it never ends inside a word."""
    if not text:
        return ""
    if from_end:
        at = next((i for i, c in enumerate(text) if c.isspace()), None)
        return text if text[0].isspace() or not text[0].isalnum() else \
            ("" if at is None else text[at:])
    at = next((i for i in range(len(text) - 1, -1, -1) if text[i].isspace()), None)
    return text if text[-1].isspace() or not text[-1].isalnum() else \
        ("" if at is None else text[:at + 1])


def _parse_all(texts: list[str], kind: type) -> bool:
    try:
        for t in texts:
            glue.whole_number(t) if kind is int else float(t)
    except (glue.GlueError, ValueError, OverflowError):
        return False
    return True
