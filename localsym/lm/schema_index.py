"""Compiled schema indexes on disk, so a second process does not recompile them.

outlines-core compiles a JSON schema (as a regex) against a model's vocabulary into an ``Index``:
seconds per schema, and outlines 1.x keeps no disk cache of it. ``Index`` serializes to bytes
(``__reduce__`` -> ``Index.from_binary``); those bytes are stored here, one file per key, written
atomically. Nothing is unpickled: the bytes go to outlines-core's own deserializer, and a file that
does not load is reported, removed and recompiled.
"""

from __future__ import annotations

from typing import Any

import hashlib
import logging
import os
import re
import re._parser as parser
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Callable

from pydantic import BaseModel

from localsym.errors import ConfigError
from localsym.lm.base import schema_of
from localsym.lm.bounded import relaxed_schema
from localsym.lm.store import canonical_json, sha256_hex

log = logging.getLogger(__name__)
MAGIC = b"localsym-index-1\n"  # then the sha256 of the index bytes, then the bytes
# compiled indexes kept in memory at once (their serialized size): a schema with a counted
# repeat compiles to tens of MB (long free text no longer: ``bounded``), and a run meets many;
# beyond this the least recently used is dropped and loaded again from disk when needed
MEMORY_BYTES = 128 * 2**20


# JSON numbers as outlines-core writes them, and bounded: at most 18 digits before the point,
# 17 after, 3 in an exponent (a model that loves zeros cannot run a number on to its limit)
_NUMBER_PARTS = (("(0|[1-9][0-9]*)", "(0|[1-9][0-9]{0,17})"), (r"(\.[0-9]+)?", r"(\.[0-9]{1,17})?"),
                 ("([eE][+-][0-9]+)?", "([eE][+-][0-9]{1,3})?"))


def schema_regex(schema: type[BaseModel], whitespace: str, bounded_numbers: bool = False,
                 relax: bool = True) -> str:
    """The regex outlines-core decodes ``schema`` with (``bounded_numbers``: every number at
    most 18 digits long; ``relax``: long free-text bounds left to the decoder, see
    ``bounded``); a schema it cannot compile is a ConfigError."""
    from outlines_core.json_schema import build_regex_from_schema  # noqa: PLC0415 (the schema compiler loads only when a schema is compiled)

    json_schema = patterned(relaxed_schema(schema)[0] if relax else schema_of(schema))
    try:
        regex = build_regex_from_schema(canonical_json(json_schema), whitespace)
    except Exception as err:  # outlines-core raises its own ValueError subclasses
        raise ConfigError(f"schema {schema.__name__} cannot be compiled for decoding: {err}",
                          "simplify the schema (outlines-core supports most of JSON "
                          "schema, not every keyword)") from None
    if bounded_numbers:
        for old, new in _NUMBER_PARTS:
            regex = regex.replace(old, new)
    return regex


_REPEAT = re.compile(r"\^?(\[(?:[^\]\\]|\\.)+\]|\\[dwsDWS]|\.)(\+|\*|\{(\d+)(,(\d*))?\})\$?")


MAX_FOLDED = 256  # the longest bound folded into a pattern's repeat


def patterned(schema: Any) -> Any:
    """``schema`` with every string's length bounds folded into its pattern: outlines-core
    decodes a string that has both by its length alone and drops the pattern. A pattern that is
    one class repeated (``^[a-z]+$``, ``\\d{2,}``) takes the bounds as its repeat
    (``^[a-z]{1,64}$``); any other keeps the pattern, and the bounds are checked when the
    answer is validated."""
    if isinstance(schema, list):
        return [patterned(x) for x in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: patterned(v) for k, v in schema.items()}
    if isinstance(out.get("pattern"), str) and ("maxLength" in out or "minLength" in out):
        low, high = out.pop("minLength", 0), out.pop("maxLength", None)
        m = _REPEAT.fullmatch(out["pattern"])
        if m is not None:
            q = m.group(2)
            q_low = 1 if q == "+" else 0 if q == "*" else int(m.group(3))
            q_high = None if q in "+*" else (int(m.group(3)) if m.group(4) is None else
                                             (int(m.group(5)) if m.group(5) else None))
            low = max(low, q_low)
            high = q_high if high is None else (high if q_high is None else min(high, q_high))
            if high is not None and high > MAX_FOLDED:
                high = None  # a long bound is not unrolled: it is checked on validation
            if high is None or low <= high:
                out["pattern"] = f"^{m.group(1)}{{{low},{'' if high is None else high}}}$"
    return out


MAX_REPEAT_STATES = 4096  # counted repetitions a schema's regex may unroll into, in all


def repeat_states(regex: str) -> int:
    """About how many states the counted repetitions of ``regex`` unroll into (``x{1,30000}``:
    30000; nested ones multiply): what makes a compiled index large. 0 if it does not parse."""
    try:
        tree = parser.parse(regex)
    except (re.error, RecursionError, OverflowError):
        return 0

    def cost(items) -> int:
        total = 0
        for op, arg in items:
            if op in (parser.MAX_REPEAT, parser.MIN_REPEAT):
                low, high, sub = arg
                inner = max(cost(sub), 1)
                total += inner * (max(low, 1) if high == parser.MAXREPEAT else high)
            elif op == parser.SUBPATTERN:
                total += cost(arg[-1])
            elif op == parser.BRANCH:
                total += sum(cost(b) for b in arg[1])
        return total

    try:
        return cost(tree)
    except RecursionError:
        return MAX_REPEAT_STATES + 1


def nested_unbounded(regex: str) -> bool:
    """Whether ``regex`` repeats, without a bound, something that itself repeats without a
    bound (``(a+)+``, ``(a*|b)*``): a backtracking matcher takes exponential time on it."""
    try:
        tree = parser.parse(regex)
    except (re.error, RecursionError, OverflowError):
        return False

    def unbounded(items, inside: bool) -> bool:
        for op, arg in items:
            if op in (parser.MAX_REPEAT, parser.MIN_REPEAT):
                open_ended = arg[1] == parser.MAXREPEAT
                if open_ended and inside:
                    return True
                if unbounded(arg[2], inside or open_ended):
                    return True
            elif op == parser.SUBPATTERN and unbounded(arg[-1], inside):
                return True
            elif op == parser.BRANCH and any(unbounded(b, inside) for b in arg[1]):
                return True
        return False

    try:
        return unbounded(tree, False)
    except RecursionError:
        return True


def check_size(regex: str, name: str) -> int:
    """Refuse a schema whose compiled index would take all memory (a pattern or a max_length
    with a counted repeat of tens of thousands), before compiling it; its counted repeats."""
    states = repeat_states(regex)
    if states > MAX_REPEAT_STATES:
        raise ConfigError(f"schema {name} unrolls into about {states} counted repetitions (over "
                          f"{MAX_REPEAT_STATES}): its compiled index would not fit in memory",
                          "lower the bound of its patterns' {m,n} repeats or its max_length "
                          "(or use * and + for an unbounded length)")
    return states


def vocabulary(pieces: list[bytes], eos: int, is_control: Callable[[int], bool]):
    """The outlines-core Vocabulary of a model: every token's bytes, with the end-of-sequence
    token, empty tokens and control tokens left out (so no answer can contain <|im_start|>)."""
    from outlines_core import Vocabulary  # noqa: PLC0415 (the schema compiler loads only when a schema is compiled)

    by_piece: dict[bytes, list[int]] = {}
    for tok, piece in enumerate(pieces):
        if tok == eos or not piece or is_control(tok):
            continue
        by_piece.setdefault(piece, []).append(tok)
    return Vocabulary(eos, by_piece)


TRIM_BYTES = 8 * 2**20  # after a compiled index this large, freed memory goes back to the OS
TRIM_STATES = 100  # a regex that unrolls into more counted repeats compiles to tens of MB


def _trim() -> None:
    """Hand the heap's free pages back to the OS (glibc's malloc_trim): compiling or loading a
    large index frees as much as it keeps, which glibc otherwise holds on to."""
    try:
        import ctypes  # noqa: PLC0415 (only where a large index was made)

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def index_bytes(index) -> bytes:
    constructor, args = index.__reduce__()
    if not (len(args) == 1 and isinstance(args[0], bytes)):
        raise TypeError("this outlines-core Index does not serialize to bytes")
    return args[0]


class IndexStore:
    """One file per compiled index under ``directory``; key = sha256 of (regex, model, versions)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.loaded = self.compiled = 0
        self._loaded_size = 0  # the size of the index ``load`` last returned
        # regex -> (Index, its size, its forced-text table), this process, least recently used
        # first; id(Index) -> regex of the held ones
        self._memory: OrderedDict[str, tuple[object, int, dict]] = OrderedDict()
        self._ids: dict[int, str] = {}

    def index_for(self, schema: type[BaseModel], whitespace: str, model: dict,
                  vocab: Callable[[], object], bounded_numbers: bool = False,
                  relax: bool = True):
        """The compiled Index for ``schema``: from memory, from disk, or compiled against
        ``vocab()`` and stored. ``model``: what else the index depends on (the model file's
        sha256, its end token, the library version), part of the file's key. ``relax``: long
        free-text bounds left out of the index (the decoder counts them: ``bounded``)."""
        regex = schema_regex(schema, whitespace, bounded_numbers, relax)
        held = self._memory.get(regex)
        if held is not None:
            self._memory.move_to_end(regex)
            return held[0]
        key = sha256_hex(canonical_json({"regex": regex, "format": 2, **model}))
        index, size = self.load(key), self._loaded_size
        if index is None:
            from outlines_core import Index  # noqa: PLC0415 (the schema compiler loads only when a schema is compiled)

            # a large compile's working memory is several times its index: make room first
            if check_size(regex, schema.__name__) > TRIM_STATES:
                self._memory.clear()
                self._ids.clear()
                _trim()
            index = Index(regex, vocab())
            size = self.save(key, index)
        self._memory[regex] = (index, size, {})
        self._ids[id(index)] = regex
        while len(self._memory) > 1 and sum(e[1] for e in self._memory.values()) > MEMORY_BYTES:
            self._memory.popitem(last=False)
        self._ids = {id(e[0]): r for r, e in self._memory.items()}
        if size > TRIM_BYTES:
            _trim()
        return index

    def table_for(self, index) -> dict | None:
        """The forced-text table kept with ``index`` while this store holds it (the very object:
        an index let go and a new one at its address are told apart); None otherwise."""
        regex = self._ids.get(id(index))
        held = self._memory.get(regex) if regex is not None else None
        return held[2] if held is not None and held[0] is index else None

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.index"

    def load(self, key: str):
        from outlines_core import Index  # noqa: PLC0415 (the schema compiler loads only when a schema is compiled)

        path = self.path(key)
        try:
            stored = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            log.warning("cannot read compiled index %s (%s); recompiling", path, err)
            return None
        magic = stored.startswith(MAGIC)
        digest, data = stored[len(MAGIC):len(MAGIC) + 32], stored[len(MAGIC) + 32:]
        del stored  # (a large index: one copy of its bytes at a time)
        self._loaded_size = len(data)
        if not magic or hashlib.sha256(data).digest() != digest:
            log.warning("compiled index %s is damaged or tampered with (its checksum does not "
                        "match); removing and recompiling", path)
            path.unlink(missing_ok=True)
            return None
        try:
            index = Index.from_binary(data)
        except Exception as err:  # corrupt or from another outlines-core build
            log.warning("compiled index %s does not load (%s); removing and recompiling", path, err)
            path.unlink(missing_ok=True)
            return None
        self.loaded += 1
        return index

    def save(self, key: str, index) -> int:
        """Write atomically (temp file, fsync, rename); the index's size in bytes. A failure
        only costs a recompile later."""
        self.compiled += 1
        data = index_bytes(index)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    for part in (MAGIC, hashlib.sha256(data).digest(), data):  # no joined copy
                        f.write(part)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path(key))
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as err:
            log.warning("cannot store compiled index in %s (%s); it will be recompiled next time",
                        self.directory, err)
        return len(data)
