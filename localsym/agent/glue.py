"""Glue: short chains of typed, parameterized, side-effect-free operations on a binding.

A binding moves a value into a tool's argument (``arg_from``: from an input) or out of a tool's
result (``bind``: into an output). A chain on it (``via``) reshapes the value on the way: the
text after a delimiter, a prefix stripped, a bounded regex capture, the numbers of a text, item
k of a list, a join, a case, a parse. The operations are data (pydantic models, saved in the
spec, shown in the report), executed here without ``eval``, and bounded: every text and list an
operation produces is capped, a regex runs under a timeout, a chain is at most ``MAX_OPS`` long.

Values have three kinds: ``text`` (str), ``list`` (of str) and ``number`` (int or float). Each
operation takes one kind and gives one; a chain is checked kind by kind when the spec is
validated (a number is read as its text where an operation takes text). A step that cannot
apply (no delimiter, no match, an index past the end, a text that is not a number) raises
``GlueError``: the binding fails for that example, and the node goes on as if it were absent.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Annotated, Any, Literal, Union

import regex
from pydantic import (BaseModel, ConfigDict, Field, field_validator,
                      model_validator)

Kind = Literal["text", "list", "number"]
MAX_OPS = 6  # operations in one chain
MAX_TEXT = 20_000  # characters of a text an operation may produce
MAX_ITEMS = 2_000  # items of a list an operation may produce
MAX_PARAM = 200  # characters of a text parameter (a delimiter, a prefix, a pattern)
REGEX_TIMEOUT = 0.05  # seconds one regex search may take
Param = Annotated[str, Field(min_length=1, max_length=MAX_PARAM)]


class GlueError(ValueError):
    """A glue step that cannot apply to this value (the binding fails for this example)."""


class Op(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    takes: Kind = Field("text", exclude=True, repr=False)
    gives: Kind = Field("text", exclude=True, repr=False)

    def __call__(self, value: Any) -> Any:  # pragma: no cover - every op overrides it
        raise NotImplementedError

    def describe(self) -> str:
        params = ", ".join(repr(v) for k, v in self.model_dump(exclude_defaults=True).items()
                           if k != "op")
        return f"{self.op}({params})" if params else self.op  # type: ignore[attr-defined]


def _find(text: str, delimiter: str, occurrence: str) -> int:
    at = text.find(delimiter) if occurrence == "first" else text.rfind(delimiter)
    if at < 0:
        raise GlueError(f"no {delimiter!r} in {_clip(text)}")
    return at


class After(Op):
    """The text after the first (or last) occurrence of ``delimiter``."""

    op: Literal["after"] = "after"
    delimiter: Param
    occurrence: Literal["first", "last"] = "first"

    def __call__(self, value: str) -> str:
        return value[_find(value, self.delimiter, self.occurrence) + len(self.delimiter):]


class Before(Op):
    """The text before the first (or last) occurrence of ``delimiter``."""

    op: Literal["before"] = "before"
    delimiter: Param
    occurrence: Literal["first", "last"] = "first"

    def __call__(self, value: str) -> str:
        return value[:_find(value, self.delimiter, self.occurrence)]


class StripPrefix(Op):
    """The text without ``prefix`` at its start (unchanged where it does not start with it)."""

    op: Literal["strip_prefix"] = "strip_prefix"
    prefix: Param

    def __call__(self, value: str) -> str:
        return value[len(self.prefix):] if value.startswith(self.prefix) else value


class StripSuffix(Op):
    """The text without ``suffix`` at its end (unchanged where it does not end with it)."""

    op: Literal["strip_suffix"] = "strip_suffix"
    suffix: Param

    def __call__(self, value: str) -> str:
        return value[:-len(self.suffix)] if value.endswith(self.suffix) else value


class Trim(Op):
    """The text without surrounding whitespace (or without the characters ``chars``)."""

    op: Literal["trim"] = "trim"
    chars: str | None = Field(None, min_length=1, max_length=MAX_PARAM)

    def __call__(self, value: str) -> str:
        return value.strip(self.chars)


class Regex(Op):
    """The first match of ``pattern`` (group ``group``; 0 = the whole match)."""

    op: Literal["regex"] = "regex"
    pattern: Param
    group: int = Field(0, ge=0, le=9)

    @model_validator(mode="after")
    def _compiles(self):
        _compiled(self.pattern, self.group)
        return self

    def __call__(self, value: str) -> str:
        try:
            match = _compiled(self.pattern, self.group).search(value, timeout=REGEX_TIMEOUT)
        except TimeoutError:
            raise GlueError(f"regex {self.pattern!r} took over {REGEX_TIMEOUT}s") from None
        if match is None or match.group(self.group) is None:
            raise GlueError(f"regex {self.pattern!r} does not match {_clip(value)}")
        return match.group(self.group)


class Replace(Op):
    """Every occurrence of ``old`` replaced by ``new``."""

    op: Literal["replace"] = "replace"
    old: Param
    new: str = Field("", max_length=MAX_PARAM)

    def __call__(self, value: str) -> str:
        return value.replace(self.old, self.new)


class Case(Op):
    """The text in lower, upper, title or capitalized case."""

    op: Literal["case"] = "case"
    to: Literal["lower", "upper", "title", "capitalize"]

    def __call__(self, value: str) -> str:
        return getattr(value, self.to)()


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_WORD = re.compile(r"\w+(?:['-]\w+)*")


class Numbers(Op):
    """The numbers written in the text, in order (as texts: ``-12``, ``3.5``)."""

    op: Literal["numbers"] = "numbers"
    gives: Kind = Field("list", exclude=True, repr=False)

    def __call__(self, value: str) -> list[str]:
        return _NUMBER.findall(value)


class Words(Op):
    """The words of the text, in order (letters, digits, inner apostrophes and hyphens)."""

    op: Literal["words"] = "words"
    gives: Kind = Field("list", exclude=True, repr=False)

    def __call__(self, value: str) -> list[str]:
        return _WORD.findall(value)


class Chars(Op):
    """The characters of the text that are not whitespace, in order."""

    op: Literal["chars"] = "chars"
    gives: Kind = Field("list", exclude=True, repr=False)

    def __call__(self, value: str) -> list[str]:
        return [c for c in value if not c.isspace()]


class Split(Op):
    """The text split at ``separator`` (default: at runs of whitespace), empty items dropped."""

    op: Literal["split"] = "split"
    separator: str | None = Field(None, min_length=1, max_length=MAX_PARAM)
    gives: Kind = Field("list", exclude=True, repr=False)

    def __call__(self, value: str) -> list[str]:
        return [p for p in value.split(self.separator) if p.strip()]


class Item(Op):
    """Item ``index`` of a list (0 the first, -1 the last)."""

    op: Literal["item"] = "item"
    index: int = Field(ge=-1000, le=1000)
    takes: Kind = Field("list", exclude=True, repr=False)

    def __call__(self, value: list[str]) -> str:
        try:
            return value[self.index]
        except IndexError:
            raise GlueError(f"no item {self.index} in a list of {len(value)}") from None


class Join(Op):
    """The items of a list joined by ``separator``."""

    op: Literal["join"] = "join"
    separator: str = Field(" ", max_length=MAX_PARAM)
    takes: Kind = Field("list", exclude=True, repr=False)

    def describe(self) -> str:
        return f"join({self.separator!r})"

    def __call__(self, value: list[str]) -> str:
        return self.separator.join(value)


class Count(Op):
    """How many items a list has."""

    op: Literal["count"] = "count"
    takes: Kind = Field("list", exclude=True, repr=False)
    gives: Kind = Field("number", exclude=True, repr=False)

    def __call__(self, value: list[str]) -> int:
        return len(value)


class ToInt(Op):
    """The text as a whole number (``42``, ``42.0``; not ``4.2``)."""

    op: Literal["int"] = "int"
    gives: Kind = Field("number", exclude=True, repr=False)

    def __call__(self, value: str) -> int:
        return whole_number(value)


class ToFloat(Op):
    """The text as a number."""

    op: Literal["float"] = "float"
    gives: Kind = Field("number", exclude=True, repr=False)

    def __call__(self, value: str) -> float:
        try:
            number = float(value.strip())
        except ValueError:
            raise GlueError(f"{_clip(value)} is not a number") from None
        if not math.isfinite(number):
            raise GlueError(f"{_clip(value)} is not a finite number")
        return number


class Round(Op):
    """The number rounded to ``digits`` decimals (0: a whole number)."""

    op: Literal["round"] = "round"
    digits: int = Field(0, ge=0, le=12)
    takes: Kind = Field("number", exclude=True, repr=False)
    gives: Kind = Field("number", exclude=True, repr=False)

    def __call__(self, value: float) -> float | int:
        return int(round(value)) if self.digits == 0 else round(float(value), self.digits)


class Map(Op):
    """The text looked up in a fixed table (``{"True": "yes", "False": "no"}``); a text not in
    it fails the binding."""

    op: Literal["map"] = "map"
    table: dict[str, str] = Field(min_length=1, max_length=64)

    @field_validator("table")
    @classmethod
    def _bounded(cls, table: dict[str, str]) -> dict[str, str]:
        if any(len(k) > MAX_PARAM or len(v) > MAX_PARAM for k, v in table.items()):
            raise ValueError(f"map keys and values are at most {MAX_PARAM} characters")
        return table

    def __call__(self, value: str) -> str:
        if value not in self.table:
            raise GlueError(f"{_clip(value)} is not in the map ({sorted(self.table)[:6]})")
        return self.table[value]


class Findall(Op):
    """Every match of ``pattern`` in the text, in order (group ``group``; 0 = the whole match)."""

    op: Literal["findall"] = "findall"
    pattern: Param
    group: int = Field(0, ge=0, le=9)
    gives: Kind = Field("list", exclude=True, repr=False)

    @model_validator(mode="after")
    def _compiles(self):
        _compiled(self.pattern, self.group)
        return self

    def __call__(self, value: str) -> list[str]:
        out: list[str] = []
        try:
            for m in _compiled(self.pattern, self.group).finditer(value, timeout=REGEX_TIMEOUT):
                out.append(m.group(self.group) or "")
                if len(out) > MAX_ITEMS:
                    break
        except TimeoutError:
            raise GlueError(f"findall {self.pattern!r} took over {REGEX_TIMEOUT}s") from None
        return out


class Slice(Op):
    """The characters of the text from ``start`` to ``end`` (Python's slice; None: the end)."""

    op: Literal["slice"] = "slice"
    start: int = Field(0, ge=-MAX_TEXT, le=MAX_TEXT)
    end: int | None = Field(None, ge=-MAX_TEXT, le=MAX_TEXT)

    def __call__(self, value: str) -> str:
        out = value[self.start:self.end]
        if not out:
            raise GlueError(f"no characters {self.start}:{self.end} in {_clip(value)}")
        return out


class Length(Op):
    """How many characters the text has."""

    op: Literal["length"] = "length"
    gives: Kind = Field("number", exclude=True, repr=False)

    def __call__(self, value: str) -> int:
        return len(value)


class Sort(Op):
    """The items in order: as texts, or as numbers (``numeric``)."""

    op: Literal["sort"] = "sort"
    numeric: bool = False
    descending: bool = False
    takes: Kind = Field("list", exclude=True, repr=False)
    gives: Kind = Field("list", exclude=True, repr=False)

    def __call__(self, value: list[str]) -> list[str]:
        key = (lambda v: _number(v)) if self.numeric else None
        return sorted(value, key=key, reverse=self.descending)


class Reverse(Op):
    """The items in reverse order."""

    op: Literal["reverse"] = "reverse"
    takes: Kind = Field("list", exclude=True, repr=False)
    gives: Kind = Field("list", exclude=True, repr=False)

    def __call__(self, value: list[str]) -> list[str]:
        return value[::-1]


class Unique(Op):
    """The items without repeats, in the order first seen."""

    op: Literal["unique"] = "unique"
    takes: Kind = Field("list", exclude=True, repr=False)
    gives: Kind = Field("list", exclude=True, repr=False)

    def __call__(self, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class Keep(Op):
    """The items that ``pattern`` matches whole, in order."""

    op: Literal["keep"] = "keep"
    pattern: Param
    takes: Kind = Field("list", exclude=True, repr=False)
    gives: Kind = Field("list", exclude=True, repr=False)

    @model_validator(mode="after")
    def _compiles(self):
        _compiled(self.pattern, 0)
        return self

    def __call__(self, value: list[str]) -> list[str]:
        try:
            compiled = _compiled(self.pattern, 0)
            return [v for v in value if compiled.fullmatch(v, timeout=REGEX_TIMEOUT) is not None]
        except TimeoutError:
            raise GlueError(f"keep {self.pattern!r} took over {REGEX_TIMEOUT}s") from None


class Sum(Op):
    """The sum of the items, each read as a number."""

    op: Literal["sum"] = "sum"
    takes: Kind = Field("list", exclude=True, repr=False)
    gives: Kind = Field("number", exclude=True, repr=False)

    def __call__(self, value: list[str]) -> int | float:
        return _finite(sum(_number(v) for v in value))


class Product(Op):
    """The product of the items, each read as a number."""

    op: Literal["product"] = "product"
    takes: Kind = Field("list", exclude=True, repr=False)
    gives: Kind = Field("number", exclude=True, repr=False)

    def __call__(self, value: list[str]) -> int | float:
        return _finite(math.prod(_number(v) for v in value))


_FIELD = re.compile(r"\{(\d{1,2})\}")


class Format(Op):
    """The items of a list written into a template: ``{0}`` is the first item, ``{2}`` the third
    (``{1}/{2}/{0}`` turns ``2001, 01, 30`` into ``01/30/2001``); other text is kept as it is."""

    op: Literal["format"] = "format"
    template: Param
    takes: Kind = Field("list", exclude=True, repr=False)

    @field_validator("template")
    @classmethod
    def _has_fields(cls, template: str) -> str:
        if not _FIELD.search(template):
            raise ValueError(f"format template {template!r} names no item ({{0}}, {{1}}, ...)")
        return template

    def __call__(self, value: list[str]) -> str:
        def item(m: re.Match) -> str:
            k = int(m.group(1))
            if k >= len(value):
                raise GlueError(f"no item {k} in a list of {len(value)}")
            return value[k]
        return _FIELD.sub(item, self.template)


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str, group: int):
    """The compiled pattern (once per pattern); a ValueError where it is not valid or has no
    such group."""
    try:
        compiled = regex.compile(pattern)
    except regex.error as err:
        raise ValueError(f"regex {pattern!r} is not a valid pattern ({err})") from None
    if group > compiled.groups:
        raise ValueError(f"regex {pattern!r} has {compiled.groups} group(s), not group {group}")
    return compiled


def _number(text: str) -> int | float:
    """An item read as a number (a whole number stays an int); GlueError where it is not."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise GlueError(f"{_clip(text)} is not a number") from None
    if not math.isfinite(value):
        raise GlueError(f"{_clip(text)} is not a finite number")
    return value


def _finite(value: int | float) -> int | float:
    if isinstance(value, float) and not math.isfinite(value):
        raise GlueError("the result is not a finite number")
    if isinstance(value, int) and abs(value) > 10 ** 300:
        raise GlueError("the result is too large a number")
    return value


AnyOp = Annotated[Union[After, Before, StripPrefix, StripSuffix, Trim, Regex, Replace, Case,
                        Numbers, Words, Chars, Split, Item, Join, Count, ToInt, ToFloat, Round,
                        Map, Findall, Slice, Length, Sort, Reverse, Unique, Keep, Sum, Product,
                        Format], Field(discriminator="op")]
OP_TYPES = {t.model_fields["op"].default: t for t in AnyOp.__origin__.__args__}  # type: ignore


def number_text(value: int | float) -> str:
    """A number as text: whole numbers without a decimal point."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return str(value)


def whole_number(text: str) -> int:
    """``text`` as an int: written as one (``56088``) or as a float with nothing after the point
    (``56088.0``); anything else is a GlueError."""
    text = str(text).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise GlueError(f"{_clip(text)} is not a number") from None
    if not math.isfinite(value) or not value.is_integer():
        raise GlueError(f"{_clip(text)} is not a whole number")
    return int(value)


def _clip(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")
