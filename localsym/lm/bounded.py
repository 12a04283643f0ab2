"""Long free-text bounds counted by the decoder instead of unrolled into the compiled index.

A JSON schema's ``maxLength`` compiles (outlines-core) to a counted repeat of one string
character, ``(c){0,300}``, and the compiled index grows with the count: a 300-character team
message was a 110 MB index and ~400 MB more while compiling, the peak of a training run's memory.
Here such a string is compiled unbounded (``(c)*``: a few states) and the decoder keeps the
bound itself: ``relax`` drops each long ``maxLength`` whose place in the answer is unambiguous
and says where it was (the path of property names, arrays transparent); ``StringCounter``
follows the answer byte by byte (where it is, which string, how many characters so far) and
gives the tokens the bound allows (``UnitTable``: each token's characters before a closing
quote). The allowed tokens are the same set the unrolled index allows, so answers do not change
(``tests/test_bounded.py`` walks both indexes side by side); at the bound the closing quote is
forced text, as the unrolled index forces it.

A character here is what the unrolled pattern counts: one code point, or one escape (``\\n``,
``\\u00e9``); the decoded string is never longer, so pydantic's ``max_length`` holds.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from pydantic import BaseModel

from localsym.lm.base import schema_of

RELAX_CHARS = 32  # a maxLength this long or longer is counted by the decoder (shorter: unrolled)
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\-]+")  # property names the counter matches byte for byte
_STRUCTURE = ("$ref", "anyOf", "oneOf", "allOf", "properties", "items", "prefixItems",
              "additionalProperties", "patternProperties", "enum", "const", "type", "not")
Path = tuple[str, ...]
_ARRAY = object()  # an array's frame on the counter's stack (arrays add nothing to a path)


@dataclass(frozen=True)
class Bounds:
    """The bounds a relaxed schema leaves to the decoder: characters by path (a path element is
    a property name, or ``name\0K\0V`` in an object whose first property ``K`` is the
    constant ``V``: a tagged union's branch), and the tag properties ``K``."""

    paths: dict[Path, int] = field(default_factory=dict)
    tags: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.paths)


def _const(node, defs: dict) -> str | None:
    """The one string value a property schema allows, if it is a plain constant."""
    if isinstance(node, dict) and isinstance(node.get("$ref"), str):
        node = defs.get(node["$ref"].rsplit("/", 1)[-1], {})
    if not isinstance(node, dict):
        return None
    value = node.get("const", node["enum"][0] if len(node.get("enum") or ()) == 1 else None)
    return value if isinstance(value, str) and _PLAIN_KEY.fullmatch(value) else None


def _tags(tree, defs: dict) -> frozenset[str]:
    """Property names that tag an object: every object whose first property (in the order the
    answer writes them, sorted) has that name requires it and fixes it to one constant."""
    seen: dict[str, bool] = {}
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        stack.extend(node.values())
        props = node.get("properties")
        if isinstance(props, dict) and props:
            first = min(props)
            tagged = first in (node.get("required") or ()) and \
                _const(props[first], defs) is not None
            seen[first] = seen.get(first, True) and tagged
    return frozenset(k for k, ok in seen.items() if ok and _PLAIN_KEY.fullmatch(k))


def relax(schema: dict, min_chars: int = RELAX_CHARS) -> tuple[dict, Bounds]:
    """``schema`` with each free-text ``maxLength`` of at least ``min_chars`` dropped where the
    decoder can count it, and those bounds; ``(schema, Bounds())`` when there are none.

    A bound is dropped only where every string the schema allows at that path is free text with
    that same bound (no enum, const, pattern or format there, no other bound, no open dict whose
    keys could spell the path), and the schema has no recursive reference. The branches of a
    tagged union (``{"action": "add_role", ...}``) are told apart by their tag."""
    work = copy.deepcopy(schema)
    defs = work.get("$defs", {})
    tags = _tags(work, defs)
    at: dict[Path, list] = {}  # path -> [("bound", n, node) | ("other",)]
    wild: list[Path] = []  # where any key may come ("*"), and anything below it
    paths_of: dict[int, list[Path]] = {}

    class Recursive(Exception):
        pass

    def anything(path: Path) -> None:  # any value here: strings, and objects with any keys
        at.setdefault(path, []).append(("other",))
        wild.append(path + ("*",))

    def visit(node, path: Path, refs: tuple[str, ...]) -> None:
        if not isinstance(node, dict):
            if node is True:
                anything(path)
            return
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name in refs or not ref.startswith("#/$defs/") or name not in defs:
                raise Recursive
            visit(defs[name], path, refs + (name,))
        kinds = node.get("type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if "string" in kinds or "enum" in node or "const" in node:
            n = node.get("maxLength")
            free = kinds == ["string"] and not ({"enum", "const", "pattern", "format"} & set(node))
            if free and isinstance(n, int) and not isinstance(n, bool) and n >= min_chars:
                at.setdefault(path, []).append(("bound", n, node))
                paths_of.setdefault(id(node), []).append(path)
            else:
                at.setdefault(path, []).append(("other",))
        elif not any(k in node for k in _STRUCTURE):  # {}: any value
            anything(path)
        if "object" in kinds and "properties" not in node and \
                node.get("additionalProperties") is None and "patternProperties" not in node:
            wild.append(path + ("*",))  # an object of any keys
        if "array" in kinds and "items" not in node and "prefixItems" not in node:
            anything(path)  # an array of anything
        for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            for sub in node.get(key) or ():
                visit(sub, path, refs)
        if "items" in node:
            visit(node["items"], path, refs)
        props = node.get("properties") or {}
        first = min(props) if props else None
        tag = f"\0{first}\0{_const(props[first], defs)}" if first in tags else ""
        for name, sub in props.items():
            visit(sub, path + (name if name == first else name + tag,), refs)
        for key in ("additionalProperties", "patternProperties"):
            extra = node.get(key)
            subs = extra.values() if key == "patternProperties" and isinstance(extra, dict) \
                else [extra] if extra not in (None, False) else []
            for sub in subs:
                wild.append(path + ("*",))
                visit(sub, path + ("*",), refs)

    try:
        visit(work, (), ())
    except Recursive:
        return schema, Bounds()

    def safe(path: Path) -> bool:
        kinds = at.get(path, [])
        return bool(kinds) and all(k[0] == "bound" and k[1] == kinds[0][1] for k in kinds) and \
            all(_PLAIN_KEY.fullmatch(p.split("\0", 1)[0]) for p in path) and \
            not any(len(w) <= len(path) and all(a in ("*", b) for a, b in zip(w, path))
                    for w in wild)

    bounds: dict[Path, int] = {}
    for entries in at.values():
        for entry in entries:
            if entry[0] != "bound":
                continue
            node = entry[2]
            paths = paths_of[id(node)]
            if node.get("maxLength") is not None and all(safe(p) for p in paths):
                for p in paths:
                    bounds[p] = node["maxLength"]
                del node["maxLength"]
    return (work, Bounds(bounds, tags)) if bounds else (schema, Bounds())


@lru_cache(maxsize=512)
def _relaxed(schema: type[BaseModel], min_chars: int) -> tuple[dict, Bounds]:
    return relax(schema_of(schema), min_chars)


def relaxed_schema(schema: type[BaseModel]) -> tuple[dict, Bounds]:
    """``relax`` of a pydantic model's JSON schema (computed once per class; read-only)."""
    return _relaxed(schema, RELAX_CHARS)


def _units(piece: bytes, skip: int) -> tuple[int, bool, int]:
    """Characters of a string that ``piece`` (from byte ``skip`` on, the bytes before it ending
    an escape) adds before its closing quote; whether it has one; the most characters it gives a
    later string it opens (after the quote)."""
    count, esc, i, closed, later, inside = 0, 0, skip, False, 0, True
    while i < len(piece):
        c = piece[i]
        i += 1
        if esc == -1:
            esc = 4 if c == ord("u") else 0
            continue
        if esc > 0:
            esc -= 1
            continue
        if c == ord('"'):
            if inside and not closed:
                closed = True
            inside = not inside
            if inside:
                count_later = 0
            continue
        if not inside:
            continue
        unit = c & 0xC0 != 0x80
        if c == ord("\\"):
            esc = -1
        if closed:
            count_later += unit
            later = max(later, count_later)
        else:
            count += unit
    return count, closed, later


class UnitTable:
    """Per token of a vocabulary: the characters it adds to the open string before its closing
    quote, for each way an escape before it may still be open (``after[k]``: the first ``k``
    bytes end an escape); and the tokens that could write a whole long string on their own."""

    def __init__(self, pieces: list[bytes], min_chars: int = RELAX_CHARS):
        rows = [[_units(p, k) for p in pieces] for k in range(6)]
        self.after = [np.array([r[0] for r in row], dtype=np.int32) for row in rows]
        self.first_u = np.array([p[:1] == b"u" for p in pieces])
        # a token that closes a string and writes min_chars of the next one is left out wherever
        # a bound is counted (the unrolled index might refuse it; no real vocabulary has one)
        self.too_long = np.array([r[2] >= min_chars for r in rows[0]]) | \
            np.array([b'"' in p and _units(b'"' + p, 0)[2] >= min_chars for p in pieces])
        self.any_too_long = bool(self.too_long.any())


class StringCounter:
    """Where one answer is in its JSON, and how many characters its open string has: fed every
    byte the answer gets, it gives the tokens the bounds allow next."""

    def __init__(self, bounds: Bounds, table: UnitTable):
        self.bounds, self.tags, self.table = bounds.paths, bounds.tags, table
        # per open object [its current key or None, whether a key comes next, its first key,
        # its tag ("\0K\0V" once its first key K's value V is written)]; per array [_ARRAY]
        self._stack: list[list] = []
        self._value = False  # the open string is a tag's value (kept in _buf)
        self._in, self._key = False, False  # in a string; the string is a key
        self._buf = bytearray()
        self._esc = 0  # -1 after a backslash, k > 0: k hex digits of \\u to go
        self._bound: int | None = None  # the open string's bound
        self._units = 0
        self._cont = 0

    def _path(self) -> Path:
        return tuple(f[0] if f[0] == f[2] else f[0] + f[3] for f in self._stack
                     if f[0] is not _ARRAY)

    def feed(self, data: bytes) -> None:
        for c in data:
            if self._in:
                if self._esc == -1:
                    self._esc = 4 if c == ord("u") else 0
                elif self._esc > 0:
                    self._esc -= 1
                elif c == ord('"'):
                    self._in = False
                    top = self._stack[-1] if self._stack else None
                    if self._key and top is not None:
                        top[0] = self._buf.decode("utf-8", "replace")
                        top[1] = False
                        if top[2] is None:
                            top[2] = top[0]
                    elif self._value and top is not None:
                        top[3] = f"\0{top[0]}\0{self._buf.decode('utf-8', 'replace')}"
                else:
                    if c == ord("\\"):
                        self._esc = -1
                    if self._key or self._value:
                        self._buf.append(c)
                    elif c & 0xC0 != 0x80:
                        self._units += 1
                        # a character's continuation bytes still to come
                        self._cont = 3 if c >= 0xF0 else 2 if c >= 0xE0 else 1 if c >= 0xC0 else 0
                    else:
                        self._cont = max(self._cont - 1, 0)
                continue
            if c == ord("{"):
                self._stack.append([None, True, None, ""])
            elif c == ord("["):
                self._stack.append([_ARRAY, None, None, ""])
            elif c in b"]}" and self._stack:
                self._stack.pop()
            elif c == ord(",") and self._stack and self._stack[-1][0] is not _ARRAY:
                self._stack[-1][1] = True
            elif c == ord('"'):
                self._in, self._esc, self._units, self._cont = True, 0, 0, 0
                top = self._stack[-1] if self._stack else None
                self._key = top is not None and top[0] is not _ARRAY and top[1] is True
                self._value = not self._key and top is not None and top[0] is not _ARRAY and \
                    top[0] == top[2] and top[0] in self.tags and not top[3]
                self._buf.clear()
                self._bound = None if self._key else self.bounds.get(self._path())

    def limit(self) -> np.ndarray | None:
        """The tokens allowed next by the bound of the open string (bool over the vocabulary),
        or by the rule that no token writes a whole long string; None: no limit here."""
        t = self.table
        if not (self._in and self._bound is not None):
            return ~t.too_long if t.any_too_long else None
        room = self._bound - self._units
        if self._esc == -1:
            counts = np.where(t.first_u, t.after[5], t.after[1])
        else:
            counts = t.after[max(self._esc, 0)]
        return (counts <= room) & ~t.too_long if t.any_too_long else counts <= room

    def at_bound(self) -> bool:
        """The open string has all its characters, the last one whole: its closing quote is
        what comes next."""
        return self._in and self._bound is not None and self._esc == 0 and \
            self._cont == 0 and self._units >= self._bound
