"""Text that can be stored: a lone surrogate ("\\ud800", which JSON allows) can be held by no
file, cache key or database; found here before it reaches any of them, or replaced where the text
comes from code (a tool's result) rather than a user."""

from __future__ import annotations

import math
from collections.abc import Iterable


def unencodable(value, where: str = "") -> str | None:
    """Where in ``value`` (nested dicts, lists, strings) a string cannot be encoded as UTF-8 (a
    lone surrogate such as "\\ud800", which JSON allows and no file or cache key can hold);
    None if nowhere."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where or "the text"
        return None
    if isinstance(value, dict):
        items: Iterable = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        shown = str(key).encode("utf-8", "backslashreplace").decode("utf-8")
        found = unencodable(item, f"{where}.{shown}" if where else shown) or \
            unencodable(key, f"{where}.{shown}" if where else shown)
        if found:
            return found
    return None


def valid_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD (the replacement character)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def not_storable(value, where: str = "") -> str | None:
    """Why ``value`` (nested dicts, lists, strings, numbers) cannot be stored as JSON and read
    back (a lone surrogate; NaN or an infinity, which strict JSON has no words for), with where;
    None when it can."""
    bad = unencodable(value, where)
    if bad:
        return f"{bad} holds a lone surrogate (not valid Unicode text)"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where or 'the value'} is {value} (JSON has no NaN or infinity)"
    items = value.items() if isinstance(value, dict) else \
        enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, item in items:
        found = not_storable(item, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None
