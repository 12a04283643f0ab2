"""The deployment's database: versions, the live pointer, samples with their trajectories,
feedback and rounds in one SQLite file (``agent.db``), every write committed before a call
returns; and the errors a deployment's user can meet (an unknown id, a round already running)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from localsym.errors import ConfigError, LocalsymError

SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    id INTEGER PRIMARY KEY, spec TEXT NOT NULL, parent INTEGER, round INTEGER,
    status TEXT NOT NULL, reason TEXT, val_score REAL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS samples (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, version INTEGER NOT NULL,
    inputs TEXT NOT NULL, outputs TEXT, error TEXT, trajectory TEXT NOT NULL,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY, sample TEXT NOT NULL REFERENCES samples(id), score REAL,
    expected TEXT, text TEXT, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS rounds (
    id INTEGER PRIMARY KEY, status TEXT NOT NULL, trigger TEXT, live_before INTEGER,
    candidate INTEGER, decision TEXT, reason TEXT, train_size INTEGER, val_size INTEGER,
    val_live REAL, val_candidate REAL, started REAL NOT NULL, finished REAL,
    feedback_seen INTEGER NOT NULL DEFAULT 0);
"""


class NotFound(LocalsymError):
    """An id (sample, version) that this deployment does not have."""


class Busy(LocalsymError):
    """An evolution round is already running."""


class Store:
    """The deployment's SQLite database: one connection, one writer at a time, every write
    committed (WAL, synchronous=FULL) before the call returns."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                      timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as err:
            raise ConfigError(f"cannot open the deployment database {path}: {err}",
                              "point --dir at a writable directory, or restore agent.db") from None
        self.lock = threading.RLock()

    def write(self, sql: str, args=()) -> int | None:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                cur = self.db.execute(sql, args)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            return cur.lastrowid

    def rows(self, sql: str, args=()) -> list[dict]:
        with self.lock:
            cur = self.db.execute(sql, args)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def close(self) -> None:
        with self.lock:
            self.db.close()
