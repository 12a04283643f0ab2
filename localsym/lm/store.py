"""Where localsym keeps JSON documents on disk: the directory a store lives in, a process-safe
store of JSON text under string keys (never a pickle), its read-only twin for replay, and the
helpers that name what a document depends on (sha256 of a text, the decoding libraries'
versions). Below every backend and the cache: it knows nothing of LM calls.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import threading
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import diskcache
import platformdirs
from diskcache.core import MODE_PICKLE

from localsym.errors import CacheError
from localsym.faults import point

log = logging.getLogger(__name__)

_DECODING_LIBRARIES = ("llama-cpp-python", "outlines-core", "pydantic")


def canonical_json(obj) -> str:
    """JSON with sorted keys and no spaces: the same object always gives the same bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir`` if given, else ``$LOCALSYM_CACHE_DIR``, else the user cache directory."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("LOCALSYM_CACHE_DIR"):
        return Path(os.environ["LOCALSYM_CACHE_DIR"]).expanduser()
    return Path(platformdirs.user_cache_dir("localsym"))


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
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
        self.directory = Path(directory)
        self._reported: set[str] = set()  # corrupt keys already reported
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._cache = diskcache.Cache(str(self.directory), timeout=60, disk=_json_disk(),
                                          eviction_policy="none", size_limit=2**62)
        except (OSError, sqlite3.Error) as err:
            if self.directory.is_dir() and not os.access(self.directory, os.W_OK):
                raise CacheError(f"cannot open the cache at {self.directory}: the directory is "
                                 "read-only", "point LOCALSYM_CACHE_DIR (or cache_dir=) at a "
                                 "writable directory, or replay from this one (cache mode "
                                 "replay)") from None
            if not self.healthy(self.directory):
                raise _corrupt(self.directory, err) from None
            raise CacheError(f"cannot open the cache at {self.directory}: {err}",
                             "point LOCALSYM_CACHE_DIR (or cache_dir=) at a writable directory")

    @staticmethod
    def healthy(directory: str | os.PathLike) -> bool:
        """Whether the cache database in ``directory`` opens and passes SQLite's quick check
        (a missing one is healthy: it is created on first use)."""
        db = Path(directory) / "cache.db"
        if not db.exists():
            return True
        # a read-only directory cannot hold SQLite's shared-memory file: read it as immutable
        mode = "ro" if os.access(db.parent, os.W_OK) else "ro&immutable=1"
        try:
            con = sqlite3.connect(f"file:{db}?mode={mode}", uri=True, timeout=10)
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
        except sqlite3.DatabaseError as err:
            raise _corrupt(self.directory, err) from None
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
        with self._database():
            for name, delta in counts.items():
                if not delta:
                    continue
                key = f"__count__:{name}"
                try:
                    self._cache.incr(key, delta, default=0, retry=True)
                except (PickledEntry, TypeError, ValueError) as err:  # a planted counter row
                    self.report(key, f"is not a counter ({err}); starting it again")
                    self._cache.set(key, delta, retry=True)

    def counts(self) -> dict[str, int]:
        with self._database():
            out = {}
            for k in self._cache.iterkeys():
                if not (isinstance(k, str) and k.startswith("__count__:")):
                    continue
                try:
                    value = self._cache.get(k, 0)
                    out[k.split(":", 1)[1]] = int(value) if isinstance(value, int) else 0
                except PickledEntry:
                    self.report(k, "is not a counter (a pickled value); counting it as 0")
                    out[k.split(":", 1)[1]] = 0
            return out

    def __len__(self) -> int:
        with self._database():
            return len(self._cache)

    def volume(self) -> int:
        """Bytes on disk."""
        with self._database():
            return self._cache.volume()

    def clear(self) -> int:
        with self._database():
            return self._cache.clear(retry=True)

    def _database(self):
        """A context in which a database damaged past its header is one CacheError."""
        @contextlib.contextmanager
        def guarded():
            try:
                yield
            except sqlite3.DatabaseError as err:
                raise _corrupt(self.directory, err) from None
        return guarded()

    def close(self) -> None:
        self._cache.close()


def _corrupt(directory: Path, err: Exception) -> CacheError:
    return CacheError(f"the cache at {directory} is corrupt ({err})",
                      "rebuild it with `localsym cache clear` (its entries are recomputed), or "
                      "point LOCALSYM_CACHE_DIR elsewhere")


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
