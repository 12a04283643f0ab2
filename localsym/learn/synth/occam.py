"""Occam's criterion in place of a floor of rows: a program is offered only when naming it
takes fewer bits than the answers it explains, so its chance of fitting them by accident is
small (minimum description length).

A value is named by its place in the enumeration (``log2`` of how many values came before it:
the search tried that many, and one of them fitting ``D`` bits of answers by accident has a
chance of about ``2 ** (bits - D)``); a joined or conditional answer by naming each of its parts;
a constant the data does not offer (a text no two answers share, a whole answer) also costs the
bits of its text. The answers cost the bits of their characters (a digit fewer than a letter).
A program right on some rows only also names which rows. So a program that copies an answer, or
grows a branch for each row, explains nothing and is not offered; ``len(x)`` from two rows, a
join of two inputs with a separator, or a tool wired from the numbers of two word problems is."""

from __future__ import annotations

import math

from localsym.data import Example
from localsym.learn.synth import consts
from localsym.learn.synth.values import Cond, Fn, Value

DIGIT, LETTER, SPACE, OTHER = math.log2(10), math.log2(52), 2.0, math.log2(33)
CUT_TEXT = ("delimiter", "prefix", "suffix", "separator", "old", "new")  # a cut's own text


def text_bits(text: str) -> float:
    """What writing ``text`` takes, character by character (the end counts as one)."""
    return 1.0 + sum(DIGIT if c.isdigit() else LETTER if c.isalpha() else
                     SPACE if c == " " else OTHER for c in text)


class Occam:
    """The criterion for the answers of ``rows`` (``outputs``: the wanted outputs; ``inputs``:
    the node's inputs; ``serial``: the enumeration index of each kept value, by id; ``tried``:
    how many values the search kept in all, what names a value it did not keep)."""

    def __init__(self, rows: list[Example], outputs: list[str], inputs: list[str],
                 serial: dict[int, int], tried: int):
        self.rows, self.outputs, self.serial, self.tried = rows, outputs, serial, tried
        self.cheap: set = {c for c, _ in consts.NUMBERS}
        for name in outputs:
            answers = [str((ex.expected or {}).get(name, "")) for ex in rows]
            self.cheap |= set(consts.shared(answers))
            self.cheap |= {c for a in answers for c in a if not c.isalnum()} | {""}
        self.cheap |= set(consts.common_words(rows, inputs))

    def bits(self, v: Value) -> float:
        """The bits that name ``v``."""
        if id(v) in self.serial:
            return math.log2(2 + self.serial[id(v)]) + self._literals(v)
        if isinstance(v.fn, Cond):
            return 1.0 + sum(self.bits(p) for p in (v.fn.cond, v.fn.then, v.fn.other))
        if isinstance(v.fn, Fn) and v.fn.name == "concat" and not v.via:
            return 1.0 + sum(self.bits(p) for p in v.fn.args)
        return math.log2(2 + self.tried) + self._literals(v)

    def _literals(self, v: Value) -> float:
        """The bits of the text ``v`` writes that the data does not offer: a constant's, and a
        cut's words (``strip_suffix(' Kirkland')`` from one row names a person, not a rule;
        ``after(': ')``, a mark, costs nothing)."""
        own = sum(text_bits(t) for op in v.via for k in CUT_TEXT
                  if isinstance(t := getattr(op, k, None), str) and t not in self.cheap and
                  any(c.isalnum() for c in t))
        if v.const is not None and v.call is None and v.fn is None:
            return own + (0.0 if v.const in self.cheap else text_bits(str(v.const)))
        return own + sum(self._literals(p) for p in v.parts())

    def holds(self, values: list[Value], scores: list[float]) -> bool:
        """Whether ``values`` (a program's outputs and guard), right on the rows where
        ``scores`` is 1, take fewer bits than the answers they give there (right on some rows
        only, with no guard: together with which rows those are)."""
        right = sum(s >= 1.0 for s in scores)
        guarded = len(values) > len(self.outputs)
        which = 0.0 if guarded or right == len(scores) else \
            math.log2(math.comb(len(scores), right))
        explained = sum(text_bits(str((ex.expected or {}).get(name, "")))
                        for ex, s in zip(self.rows, scores) if s >= 1.0 for name in self.outputs)
        return sum(self.bits(v) for v in values) + which < explained
