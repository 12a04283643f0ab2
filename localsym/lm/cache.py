"""The disk cache: every LLM call memoized, so a run is deterministic and a re-run is nearly free.

Key: sha256 of the canonical JSON of everything that can change an answer (the LM's identity with
its model file's sha256, the messages, the output schema, every sampling param with the seed, the
versions of the libraries that decode, and a key-format version). Value: a JSON string, never a
pickle (diskcache stores ``str`` values as text). Storage is diskcache's ``Cache`` (SQLite), which
several processes may share; a write that fails raises instead of being dropped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from localsym.errors import (CacheError, CacheMissError, ConfigError, InvalidOutputError,
                             TruncatedOutputError)
from localsym.faults import point
from localsym.lm.base import LM, Call, Completion, Message, SamplingParams, canonical_json, \
    schema_of, unwrap, validate_output

log = logging.getLogger(__name__)

# Bump when anything that shapes an answer changes in localsym itself (decoding loop, whitespace
# rule, vocabulary filter, key layout): old entries then simply stop matching.
KEY_FORMAT = 2  # 2: token bytes read whole (see LlamaCpp._pieces)
CacheMode = Literal["readwrite", "replay", "off"]
# Failures that depend only on the call (its messages, schema, params and model), so a re-run
# would fail the same way: cached like answers. (A context overflow depends on n_ctx, which is not
# part of the key, so it is not cached.)
CACHED_FAILURES = {cls.__name__: cls for cls in (TruncatedOutputError, InvalidOutputError)}
MODES = ("readwrite", "replay", "off")
_DECODING_LIBRARIES = ("llama-cpp-python", "outlines-core", "pydantic")


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir`` if given, else ``$LOCALSYM_CACHE_DIR``, else the user cache directory."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("LOCALSYM_CACHE_DIR"):
        return Path(os.environ["LOCALSYM_CACHE_DIR"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("localsym"))


@lru_cache(maxsize=1)
def library_versions() -> dict:
    out = {}
    for name in _DECODING_LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class PickledEntry(ValueError):
    """A cache row in diskcache's pickle mode: never written by localsym, so planted."""


def _json_disk():
    """diskcache's Disk, refusing to unpickle: a row someone planted in pickle mode (which
    diskcache would otherwise load, running whatever the pickle names) is an error instead."""
    import diskcache
    from diskcache.core import MODE_PICKLE

    class JsonDisk(diskcache.Disk):
        def fetch(self, mode, filename, value, read):
            if mode == MODE_PICKLE:
                raise PickledEntry("a pickled value (localsym stores JSON text only)")
            return super().fetch(mode, filename, value, read)

        def store(self, value, read, key=diskcache.core.UNKNOWN):
            if not isinstance(value, (str, int)):
                raise TypeError(f"JsonStore stores JSON text, not {type(value).__name__}")
            return super().store(value, read, key=key)

    return JsonDisk


class JsonStore:
    """A directory of JSON documents under string keys, safe to share between processes.

    A thin, strict layer over ``diskcache.Cache``: values go in as JSON text (never pickled), no
    eviction, and a failed write (timeout, full disk) raises ``CacheError`` instead of vanishing.
    """

    def __init__(self, directory: str | os.PathLike):
        import diskcache

        self.directory = Path(directory)
        self._reported: set[str] = set()  # corrupt keys already reported
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._cache = diskcache.Cache(str(self.directory), timeout=60, disk=_json_disk(),
                                          eviction_policy="none", size_limit=2**62)
        except (OSError, sqlite3.Error) as err:
            if not self.healthy(self.directory):
                raise CacheError(f"the cache at {self.directory} is corrupt ({err})",
                                 "rebuild it with `localsym cache clear` (its entries are "
                                 "recomputed), or point LOCALSYM_CACHE_DIR elsewhere") from None
            raise CacheError(f"cannot open the cache at {self.directory}: {err}",
                             "point LOCALSYM_CACHE_DIR (or cache_dir=) at a writable directory")

    @staticmethod
    def healthy(directory: str | os.PathLike) -> bool:
        """Whether the cache database in ``directory`` opens and passes SQLite's quick check
        (a missing one is healthy: it is created on first use)."""
        db = Path(directory) / "cache.db"
        if not db.exists():
            return True
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
            try:
                return con.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            finally:
                con.close()
        except sqlite3.Error:
            return False

    @staticmethod
    def rebuild(directory: str | os.PathLike) -> None:
        """Replace a corrupt cache database with an empty one (its entries are lost; they are
        recomputed on the next run)."""
        directory = Path(directory)
        for name in ("cache.db", "cache.db-wal", "cache.db-shm"):
            (directory / name).unlink(missing_ok=True)

    def get(self, key: str) -> dict | None:
        """The document under ``key``; None if absent. A value that is not a JSON object (planted
        or corrupted) is reported and treated as absent."""
        try:
            raw = self._cache.get(key, default=None, retry=True)
        except PickledEntry as err:
            self.report(key, f"is corrupt ({err}); ignoring it, never unpickling it")
            return None
        if raw is None:
            return None
        try:
            if not isinstance(raw, str):
                raise TypeError(f"stored value is {type(raw).__name__}, not JSON text")
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise TypeError("stored JSON is not an object")
            return doc
        except (TypeError, ValueError) as err:
            self.report(key, f"is corrupt ({err}); ignoring it")
            return None

    def report(self, key: str, what: str) -> None:
        """Warn about a bad entry once per process (it is recomputed and overwritten)."""
        if key not in self._reported:
            self._reported.add(key)
            log.warning("cache entry %s in %s %s", key[:12], self.directory, what)

    def set(self, key: str, doc: dict) -> None:
        point("cache.set")
        try:
            ok = self._cache.set(key, canonical_json(doc), retry=True)
        except (OSError, sqlite3.Error) as err:
            raise CacheError(f"cannot write to the cache at {self.directory}: {err}",
                             "free disk space or point LOCALSYM_CACHE_DIR at another disk; "
                             "everything computed so far is kept") from err
        if not ok:
            raise CacheError(f"the cache at {self.directory} refused a write",
                             "check that the directory is writable")
        point("cache.stored")

    def add_counts(self, counts: dict[str, int]) -> None:
        """Add to persistent counters (one transaction per counter with a non-zero delta)."""
        for name, delta in counts.items():
            if delta:
                self._cache.incr(f"__count__:{name}", delta, default=0, retry=True)

    def counts(self) -> dict[str, int]:
        return {k.split(":", 1)[1]: int(self._cache.get(k, 0)) for k in self._cache.iterkeys()
                if isinstance(k, str) and k.startswith("__count__:")}

    def __len__(self) -> int:
        return len(self._cache)

    def volume(self) -> int:
        """Bytes on disk."""
        return self._cache.volume()

    def clear(self) -> int:
        return self._cache.clear(retry=True)

    def close(self) -> None:
        self._cache.close()


class ReadOnlyStore:
    """A cache directory read without writing anything to it (replay mode): the SQLite database
    opened read-only, so a read-only directory (a mounted CI cache, a shared fixture) replays.
    With recent entries still in the write-ahead log it reads them where SQLite can; where it
    cannot (a read-only directory), it says how many bytes it could not see."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self._reported: set[str] = set()
        db = self.directory / "cache.db"
        self._con = None
        if not db.is_file():
            return
        wal = self.directory / "cache.db-wal"
        pending = wal.stat().st_size if wal.is_file() else 0
        try:
            if not pending:
                raise sqlite3.OperationalError("no write-ahead log to read")
            self._con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, check_same_thread=False)
            self._con.execute("SELECT 1 FROM Cache LIMIT 1").fetchall()
        except sqlite3.Error:
            if pending:
                log.warning("%d bytes of recent entries in %s are not readable read-only; "
                            "close the recording process (or replay from a writable copy) to "
                            "see them", pending, wal)
            try:
                self._con = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True,
                                            check_same_thread=False)
                self._con.execute("SELECT 1 FROM Cache LIMIT 1").fetchall()
            except sqlite3.Error as err:
                raise CacheError(f"cannot read the cache at {self.directory}: {err}",
                                 "rebuild it with `localsym cache clear` if it is corrupt, or "
                                 "record again") from None
        self._lock = threading.Lock()

    def get(self, key: str) -> dict | None:
        if self._con is None:
            return None
        with self._lock:
            row = self._con.execute("SELECT mode, filename, value FROM Cache WHERE key = ? "
                                    "AND raw = 1", (key,)).fetchone()
        if row is None:
            return None
        mode, filename, value = row
        try:
            if mode == 3 and filename:  # MODE_TEXT: a large value in a file of its own
                value = (self.directory / filename).read_text("utf-8")
            if mode not in (1, 3) or not isinstance(value, str):
                raise TypeError("not JSON text (localsym stores JSON text only)")
            doc = json.loads(value)
            if not isinstance(doc, dict):
                raise TypeError("stored JSON is not an object")
            return doc
        except (TypeError, ValueError, OSError) as err:
            if key not in self._reported:
                self._reported.add(key)
                log.warning("cache entry %s in %s is corrupt (%s); ignoring it", key[:12],
                            self.directory, err)
            return None

    def set(self, key: str, doc: dict) -> None:
        raise CacheError(f"the cache at {self.directory} is open read-only (replay mode)",
                         "record with cache mode 'readwrite'")

    def add_counts(self, counts) -> None:
        pass  # replay writes nothing, not even its hit counters

    def counts(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


class CachedLM(LM):
    """Wrap any LM with the disk cache.

    mode ``readwrite`` (default): hits are returned, misses computed and stored.
    ``replay``: hits are returned, a miss raises ``CacheMissError`` naming the call (tests run on
    recorded entries, with no model file at all); nothing is written, and the directory may be
    read-only. ``off``: every call goes to the backend.
    ``mode`` defaults to ``$LOCALSYM_CACHE_MODE`` or ``readwrite``.
    """

    def __init__(self, backend: LM, cache_dir: str | os.PathLike | None = None,
                 mode: CacheMode | None = None):
        self.backend = backend
        mode = mode or os.environ.get("LOCALSYM_CACHE_MODE") or "readwrite"
        if mode not in MODES:
            raise ConfigError(f"unknown cache mode {mode!r}", f"use one of {', '.join(MODES)}")
        self.mode: CacheMode = mode  # type: ignore[assignment]
        self.directory = default_cache_dir(cache_dir) / "calls"
        self._store: JsonStore | None = None
        self.hits = self.misses = self.stores = 0
        self.tokens_made = 0  # prompt + answer tokens of the calls made (cache misses)
        self._counts_lock = threading.Lock()
        self._flushed = {"hits": 0, "misses": 0, "stores": 0}

    @property
    def store(self) -> JsonStore:
        if self._store is None:  # replay only reads: it opens the directory read-only
            self._store = ReadOnlyStore(self.directory) if self.mode == "replay" else \
                JsonStore(self.directory)
        return self._store

    def identity(self) -> dict:
        return self.backend.identity()

    def describe(self) -> str:
        return self.backend.describe()

    @property
    def max_concurrency(self) -> int:
        """Calls the backend can take at once (an HTTP server's slots); 1 for a local model."""
        return getattr(self.backend, "max_concurrency", 1)

    def _add(self, counter: str) -> None:
        with self._counts_lock:
            setattr(self, counter, getattr(self, counter) + 1)

    def _document(self, messages: list[Message], **call) -> dict:
        """What a key is the hash of: the call's own parts plus everything every call shares."""
        return {"key_format": KEY_FORMAT, "lm": self.backend.identity(),
                "messages": [m.model_dump() for m in messages],
                "versions": library_versions(), **call}

    def key_document(self, messages: list[Message], schema: type[BaseModel],
                     params: SamplingParams) -> dict:
        return self._document(messages, schema=schema_of(schema), params=params.model_dump())

    def key(self, messages: list[Message], schema: type[BaseModel], params: SamplingParams) -> str:
        return sha256_hex(canonical_json(self.key_document(messages, schema, params)))

    def complete(self, messages: list[Message], schema: type[BaseModel],
                 params: SamplingParams) -> Completion:
        return unwrap(self.complete_batch([Call(messages, schema, params)])[0])

    def complete_batch(self, calls, on_done=None) -> list[Completion | Exception]:
        """Hits first; only the misses go to the backend, in one batch, and each is stored as it
        finishes, under the key the same call alone would use."""
        if self.mode == "off":
            return self.backend.complete_batch(calls, on_done)
        results: list = [None] * len(calls)
        keys, misses = [], []
        for i, call in enumerate(calls):
            doc = self.key_document(*call)
            key = sha256_hex(canonical_json(doc))
            keys.append((key, doc))
            hit = self._lookup(key, call.schema)
            if hit is None:
                misses.append(i)
                continue
            results[i] = hit
            if on_done is not None:
                on_done(i, hit)
        if not misses:
            return results
        with self._counts_lock:
            self.misses += len(misses)
        if self.mode == "replay":
            raise self._replay_miss(calls[misses[0]], keys[misses[0]][0])
        start = time.perf_counter()

        def stored(j: int, result) -> None:
            i = misses[j]
            key, doc = keys[i]
            if not isinstance(result, Exception):
                try:
                    validate_output(calls[i].schema, result.text)  # never store what does not
                except InvalidOutputError as err:                  # validate
                    result = err
            if isinstance(result, tuple(CACHED_FAILURES.values())):
                # the same call fails the same way every time: remember the failure, not an answer
                self.store.set(key, {"failure": {"type": type(result).__name__,
                                                 "cause": result.cause, "fix": result.fix},
                                     "key": doc})
                self._add('stores')
            elif not isinstance(result, Exception):
                if len(misses) == 1:  # a batch's answers share its wall time; one call has its own
                    result = result.model_copy(update={"seconds": time.perf_counter() - start})
                with self._counts_lock:
                    self.tokens_made += result.prompt_tokens + result.completion_tokens
                self.store.set(key, {"completion": result.model_dump(), "key": doc})
                self._add('stores')
            results[i] = result
            if on_done is not None:
                on_done(i, result)

        self.backend.complete_batch([calls[i] for i in misses], stored)
        return results

    def _lookup(self, key: str, schema: type[BaseModel]) -> Completion | Exception | None:
        """The recorded answer (or recorded failure) of a call; None on a miss."""
        entry = self.store.get(key)
        if entry is None:
            return None
        if isinstance(entry.get("failure"), dict) and entry["failure"].get("type") in CACHED_FAILURES:
            self._add('hits')
            failure = entry["failure"]
            return CACHED_FAILURES[failure["type"]](str(failure.get("cause")), failure.get("fix"))
        try:
            completion = Completion.model_validate(entry["completion"])
            validate_output(schema, completion.text)
            self._add('hits')
            return completion.model_copy(update={"cached": True})
        except (KeyError, TypeError, ValidationError, InvalidOutputError) as err:
            log.warning("cache entry %s does not hold a valid %s answer (%s); recomputing",
                        key[:12], schema.__name__, str(err)[:120])
            return None

    def _replay_miss(self, call: Call, key: str) -> CacheMissError:
        first = call.messages[-1].content.replace("\n", " ")
        return CacheMissError(
            f"replay mode: no recorded answer for the call (schema {call.schema.__name__}, "
            f"model {self.backend.describe()}, last message {first[:60]!r}, "
            f"key {key[:16]}) in {self.directory}",
            "record it once with cache mode 'readwrite' (LOCALSYM_CACHE_MODE=readwrite), or "
            "check that the messages, schema, sampling params and model match the recording")

    def logprob(self, messages, text: str) -> tuple[float, int]:
        from localsym.lm.base import as_messages

        msgs = as_messages(messages)
        if self.mode == "off":
            return self.backend.logprob(msgs, text)
        doc = self._document(msgs, kind="logprob", text=text)
        key = sha256_hex(canonical_json(doc))
        entry = self.store.get(key)
        if entry is not None and isinstance(entry.get("logprob"), (int, float)):
            self._add('hits')
            return float(entry["logprob"]), int(entry["tokens"])
        self._add('misses')
        if self.mode == "replay":
            raise CacheMissError(f"replay mode: no recorded log-probability for {text[:60]!r} "
                                 f"(key {key[:16]}) in {self.directory}",
                                 "record it once with cache mode 'readwrite'")
        total, n = self.backend.logprob(msgs, text)
        self.store.set(key, {"logprob": total, "tokens": n, "key": doc})
        self._add('stores')
        return total, n

    def stats(self) -> dict:
        return {"hits": self.hits, "misses": self.misses, "stores": self.stores,
                "mode": self.mode, "directory": str(self.directory)}

    def flush_counts(self) -> None:
        """Add this process's hit/miss counts to the persistent totals of the cache directory."""
        if self._store is None:
            return
        now = {"hits": self.hits, "misses": self.misses, "stores": self.stores}
        self._store.add_counts({k: now[k] - self._flushed[k] for k in now})
        self._flushed = now

    def close(self) -> None:
        self.flush_counts()
        if self._store is not None:
            self._store.close()
            self._store = None
        self.backend.close()
