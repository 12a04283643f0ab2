"""The operations of the program language that take several values (``concat(a, b)``,
``substr(s, i, n)``, ``a + b``, ``contains(s, t)``): typed, total where the SMT-LIB string theory
is total (a substring out of range is empty, a text not found is at ``-1``), bounded like the glue.
The interpreter (``agent/expr.py``) and the synthesis engine (``learn/synth/``) call the same
functions, so a value the search computed is the value the program gives at run time.

Kinds: ``text`` (str), ``number`` (int), ``list`` (of str), ``bool``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from localsym.agent.glue import MAX_TEXT, GlueError, number_text

Kind = str  # "text" | "number" | "list" | "bool"
MAX_NUMBER = 10 ** 12


@dataclass(frozen=True)
class Function:
    """One operation: the kinds it takes, the kind it gives, what it computes on values already
    of those kinds (``fast``: a str, an int, a bool), how it prints (``infix``: ``a + b``; else
    ``name(a, b)``). ``__call__`` reads any value as the kind wanted first."""

    name: str
    takes: tuple[Kind, ...]
    gives: Kind
    fast: Callable[..., Any]
    doc: str
    infix: str | None = None

    def __call__(self, *args: Any) -> Any:
        if self.name == "concat":
            return _capped("".join(_text(a) for a in args))
        return self.fast(*(_READ[k](a) for k, a in zip(self.takes, args)))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return number_text(value)
    if not isinstance(value, str):
        raise GlueError(f"a {type(value).__name__} where a text is wanted")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise GlueError(f"{value!r} is not a whole number")
    return int(value)


def _truth(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise GlueError(f"{value!r} is not true or false")


def _items(value: Any) -> list:
    if not isinstance(value, (list, tuple)):
        raise GlueError(f"a {type(value).__name__} where a list is wanted")
    return list(value)


def _pick(items, k):
    if not 0 <= k < len(items):
        raise GlueError(f"no item {k} in a list of {len(items)}")
    return str(items[k])


_READ = {"text": _text, "number": _int, "bool": _truth, "list": _items}


def _capped(text: str) -> str:
    if len(text) > MAX_TEXT:
        raise GlueError(f"a text of over {MAX_TEXT} characters")
    return text


def _number(value: int) -> int:
    if abs(value) > MAX_NUMBER:
        raise GlueError("the result is too large a number")
    return value


def _rept(s: str, n: int) -> str:
    if n < 0 or len(s) * n > MAX_TEXT:
        raise GlueError("rept: a count below zero or a text too long")
    return s * n


FUNCTIONS: dict[str, Function] = {f.name: f for f in (
    Function("concat", ("text", "text"), "text", lambda a, b: _capped(a + b),
             "the texts one after the other (any number of them)"),
    Function("left", ("text", "number"), "text", lambda s, n: s[:n] if n > 0 else "",
             "the first n characters"),
    Function("right", ("text", "number"), "text", lambda s, n: s[len(s) - n:] if n > 0 else "",
             "the last n characters"),
    Function("substr", ("text", "number", "number"), "text",
             lambda s, i, n: s[i:i + n] if 0 <= i < len(s) and n > 0 else "",
             "n characters from position i (empty where out of range)"),
    Function("at", ("text", "number"), "text", lambda s, i: s[i] if 0 <= i < len(s) else "",
             "the character at position i (or empty)"),
    Function("len", ("text",), "number", len, "how many characters"),
    Function("find", ("text", "text"), "number", lambda s, t: s.find(t),
             "the position of the first occurrence of t (-1: none)"),
    Function("find_from", ("text", "text", "number"), "number",
             lambda s, t, i: s.find(t, i) if 0 <= i <= len(s) else -1,
             "the position of t at or after position i (-1: none)"),
    Function("replace", ("text", "text", "text"), "text",
             lambda s, t, u: _capped(s.replace(t, u, 1)),
             "the first occurrence of t replaced by u"),
    Function("replace_all", ("text", "text", "text"), "text",
             lambda s, t, u: _capped(s.replace(t, u)) if t else s,
             "every occurrence of t replaced by u"),
    Function("occurrences", ("text", "text"), "number", lambda s, t: s.count(t) if t else 0,
             "how many times t occurs"),
    Function("rept", ("text", "number"), "text", _rept, "the text repeated n times"),
    Function("pick", ("list", "number"), "text", _pick,
             "item k of a list, counted from 0 (an item a number gives: the n-th word)"),
    Function("to_text", ("number",), "text", number_text, "a number as text"),
    Function("add", ("number", "number"), "number", lambda a, b: _number(a + b), "the sum",
             infix="+"),
    Function("sub", ("number", "number"), "number", lambda a, b: _number(a - b),
             "the difference", infix="-"),
    Function("contains", ("text", "text"), "bool", lambda s, t: t in s, "whether t occurs in s"),
    Function("startswith", ("text", "text"), "bool", lambda s, t: s.startswith(t),
             "whether s starts with t"),
    Function("endswith", ("text", "text"), "bool", lambda s, t: s.endswith(t),
             "whether s ends with t"),
    Function("equals", ("text", "text"), "bool", lambda a, b: a == b,
             "whether the texts are the same", infix="=="),
    Function("less", ("number", "number"), "bool", lambda a, b: a < b, "whether a is below b",
             infix="<"),
    Function("at_most", ("number", "number"), "bool", lambda a, b: a <= b,
             "whether a is at most b", infix="<="),
    Function("not", ("bool",), "bool", lambda p: not p, "the opposite", infix="not"),
    Function("and", ("bool", "bool"), "bool", lambda p, q: p and q, "both", infix="and"),
    Function("or", ("bool", "bool"), "bool", lambda p, q: p or q, "either", infix="or"),
)}
INFIX = {f.infix: f.name for f in FUNCTIONS.values() if f.infix}


def fits(takes: Kind, given: Kind | None) -> bool:
    """Whether a value of kind ``given`` may stand where ``takes`` is wanted (a number or a
    truth value reads as its text; None: not known)."""
    return given is None or takes == given or (takes == "text" and given in ("number", "bool"))


def truth(value: Any) -> bool:
    """A value as a condition: a truth value, or a text ``true``/``false`` (a tool's result)."""
    return _truth(value)
