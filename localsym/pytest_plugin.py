"""A pytest plugin (registered as the ``pytest11`` entry point ``localsym``): test an agent on
recorded model calls, offline, in milliseconds.

    def test_my_agent(localsym_lm):
        agent = localsym.Pipeline(localsym.PipelineSpec.load("agent.yaml"), localsym_lm)
        assert agent.forward({"question": "What is 6 times 7?"}).ok

``pytest --localsym-record`` (or ``LOCALSYM_RECORD=1``) runs the real model and writes every call
of the test to a cassette: ``cassettes/<test file>/<test name>/`` next to the test file (a name
that had to be changed to be a directory name gets a short hash of the real one, so ``[a b]``,
``[a/b]`` and ``[a_b]`` never share a cassette), one JSON file per
call in the disk cache's own key and value format (reviewable, diff-able, committed with the
test), plus ``lm.json`` (the model's identity). Without it (the default, and what CI runs), the
calls are answered from the cassette with no model file at all, and a call that was never
recorded fails the test naming the call. ``@pytest.mark.localsym(model="NAME")`` picks the
model to record with (default: the embedded one).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from localsym.errors import ConfigError
from localsym.files import user_path
from localsym.lm import open_lm
from localsym.lm.base import LM
from localsym.lm.cache import CachedLM
from localsym.lm.store import canonical_json


class CassetteStore:
    """The cache's store interface over a directory of JSON files, one per key."""

    def __init__(self, directory: Path):
        self.directory = directory

    def _file(self, key: str) -> Path:
        return self.directory / f"{key[:24]}.json"

    def get(self, key: str) -> dict | None:
        path = self._file(key)
        if not path.is_file():
            return None
        try:
            doc = json.loads(path.read_text("utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise ConfigError(f"cassette file {path} is not JSON ({str(err)[:100]})",
                              "restore it from version control, or record the test again "
                              "with pytest --localsym-record") from None
        return doc if isinstance(doc, dict) and doc.get("sha256") == key else None

    def set(self, key: str, doc: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"sha256": key, **json.loads(canonical_json(doc))}, indent=1,
                          sort_keys=True, ensure_ascii=False)
        self._file(key).write_text(text + "\n", "utf-8")

    def add_counts(self, counts) -> None:
        pass

    def close(self) -> None:
        pass


class Recorded(LM):
    """The model of a cassette when replaying: its identity, and no way to answer."""

    def __init__(self, identity: dict, name: str):
        self._identity, self.name = identity, name

    def identity(self) -> dict:
        return self._identity

    def describe(self) -> str:
        return f"{self.name} (replayed from a cassette)"

    def complete(self, messages, schema, params):
        raise AssertionError("unreachable: a replaying cassette never asks its model")


class CassetteLM(CachedLM):
    """``CachedLM`` whose store is a cassette directory: ``record`` computes and writes misses;
    otherwise every call must be in the cassette (a miss raises ``CacheMissError``)."""

    def __init__(self, backend: LM, directory: str | Path, record: bool):
        super().__init__(backend, cache_dir=directory, mode="readwrite" if record else "replay")
        self.directory = Path(directory)
        self._store = CassetteStore(self.directory)
        if record:
            self.directory.mkdir(parents=True, exist_ok=True)
            (self.directory / "lm.json").write_text(json.dumps(
                {"identity": backend.identity(), "name": backend.describe()}, indent=1,
                sort_keys=True) + "\n", "utf-8")


def open_cassette(directory: str | Path, record: bool, model: str | None = None) -> CassetteLM:
    """The LM of a cassette: the real model behind it when recording, none when replaying."""
    directory = user_path(directory, "the cassette directory", "give a directory's path")
    if record:
        return CassetteLM(open_lm(model, cache_mode="off").backend, directory, record=True)
    meta = directory / "lm.json"
    if not meta.is_file():
        raise ConfigError(f"no recorded cassette at {directory}",
                          "record it once with: pytest --localsym-record (or LOCALSYM_RECORD=1), "
                          "then commit the cassette directory")
    try:
        info = json.loads(meta.read_text("utf-8"))
        identity = info["identity"]
        if not isinstance(identity, dict):
            raise TypeError("identity is not an object")
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"cassette {meta} is damaged ({type(err).__name__}: {str(err)[:80]})",
                          "record it again with: pytest --localsym-record (or "
                          "LOCALSYM_RECORD=1)") from None
    return CassetteLM(Recorded(identity, str(info.get("name", "model"))), directory,
                      record=False)


def cassette_dir(test_file: Path, test_name: str) -> Path:
    """Where a test's cassette lives: ``cassettes/<file stem>/<name>`` beside the test file; a
    name that is not already a safe directory name gets a hash of itself appended."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name).strip(".") or "test"
    if safe != test_name:
        safe = f"{safe[:80]}-{hashlib.sha256(test_name.encode()).hexdigest()[:8]}"
    return test_file.parent / "cassettes" / test_file.stem / safe


def pytest_addoption(parser):
    group = parser.getgroup("localsym")
    group.addoption("--localsym-record", action="store_true", default=False,
                    help="run the real model and (re)write the cassettes of the tests that use "
                         "the localsym_lm fixture")


def pytest_configure(config):
    config.addinivalue_line("markers", "localsym(model=None): the model a cassette is recorded "
                                       "with (default: the embedded one)")


@pytest.fixture
def localsym_lm(request):
    """An LM for the test: recorded calls replayed (default), or the real model recording them
    (``--localsym-record``)."""
    record = request.config.getoption("localsym_record") or \
        os.environ.get("LOCALSYM_RECORD", "") not in ("", "0")
    marker = request.node.get_closest_marker("localsym")
    model = marker.kwargs.get("model") if marker else None
    # the whole node id after the file: TestA::test_same and TestB::test_same are two cassettes
    test_id = request.node.nodeid.split("::", 1)[-1]
    directory = cassette_dir(Path(str(request.node.fspath)), test_id)
    if record and directory.is_dir():  # a re-recording starts from an empty cassette
        for old in directory.glob("*.json"):
            old.unlink()
    lm = open_cassette(directory, record, model)
    yield lm
    lm.close()
