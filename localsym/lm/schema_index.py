"""Compiled schema indexes on disk, so a second process does not recompile them.

outlines-core compiles a JSON schema (as a regex) against a model's vocabulary into an ``Index``:
seconds per schema, and outlines 1.x keeps no disk cache of it. ``Index`` serializes to bytes
(``__reduce__`` -> ``Index.from_binary``); those bytes are stored here, one file per key, written
atomically. Nothing is unpickled: the bytes go to outlines-core's own deserializer, and a file that
does not load is reported, removed and recompiled.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Callable

from pydantic import BaseModel

from localsym.errors import ConfigError
from localsym.lm.base import schema_of
from localsym.lm.store import canonical_json, sha256_hex

log = logging.getLogger(__name__)


def schema_regex(schema: type[BaseModel], whitespace: str) -> str:
    """The regex outlines-core decodes ``schema`` with; a schema it cannot compile is a
    ConfigError."""
    from outlines_core.json_schema import build_regex_from_schema

    try:
        return build_regex_from_schema(canonical_json(schema_of(schema)), whitespace)
    except Exception as err:  # outlines-core raises its own ValueError subclasses
        raise ConfigError(f"schema {schema.__name__} cannot be compiled for decoding: {err}",
                          "simplify the schema (outlines-core supports most of JSON "
                          "schema, not every keyword)") from None


def vocabulary(pieces: list[bytes], eos: int, is_control: Callable[[int], bool]):
    """The outlines-core Vocabulary of a model: every token's bytes, with the end-of-sequence
    token, empty tokens and control tokens left out (so no answer can contain <|im_start|>)."""
    from outlines_core import Vocabulary

    by_piece: dict[bytes, list[int]] = {}
    for tok, piece in enumerate(pieces):
        if tok == eos or not piece or is_control(tok):
            continue
        by_piece.setdefault(piece, []).append(tok)
    return Vocabulary(eos, by_piece)


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
        self._memory: dict[str, object] = {}  # regex -> Index, this process

    def index_for(self, schema: type[BaseModel], whitespace: str, model: dict,
                  vocab: Callable[[], object]):
        """The compiled Index for ``schema``: from memory, from disk, or compiled against
        ``vocab()`` and stored. ``model``: what else the index depends on (the model file's
        sha256, its end token, the library version), part of the file's key."""
        regex = schema_regex(schema, whitespace)
        index = self._memory.get(regex)
        if index is None:
            key = sha256_hex(canonical_json({"regex": regex, **model}))
            index = self.load(key)
            if index is None:
                from outlines_core import Index

                index = Index(regex, vocab())
                self.save(key, index)
            self._memory[regex] = index
        return index

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.index"

    def load(self, key: str):
        from outlines_core import Index

        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            log.warning("cannot read compiled index %s (%s); recompiling", path, err)
            return None
        try:
            index = Index.from_binary(data)
        except Exception as err:  # corrupt or from another outlines-core build
            log.warning("compiled index %s does not load (%s); removing and recompiling", path, err)
            path.unlink(missing_ok=True)
            return None
        self.loaded += 1
        return index

    def save(self, key: str, index) -> None:
        """Write atomically (temp file, fsync, rename). A failure only costs a recompile later."""
        self.compiled += 1
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(index_bytes(index))
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path(key))
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as err:
            log.warning("cannot store compiled index in %s (%s); it will be recompiled next time",
                        self.directory, err)
