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

log = logging.getLogger(__name__)


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
