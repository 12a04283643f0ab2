"""The disk cache: keys, modes, JSON-only values, hits across processes, concurrency."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import diskcache
import pytest

from conftest import ScriptedLM, Verdict, run_python
from localsym.errors import CacheMissError, ConfigError, InvalidOutputError
from localsym.lm import CachedLM, LlamaCpp, SamplingParams, open_lm, resolve
from localsym.lm.models import ModelRef

TESTS = str(Path(__file__).parent)
ANSWER = '{"label":"yes","reason":"scripted"}'


def scripted(text=ANSWER):
    return ScriptedLM(lambda messages, params: text)


def raw_entries(cache_dir: Path) -> dict:
    with diskcache.Cache(str(cache_dir / "calls")) as c:
        return {k: c.get(k) for k in c.iterkeys() if not k.startswith("__count__:")}


def test_second_identical_call_is_a_hit_with_identical_bytes(cache_dir):
    lm = open_lm(cache_dir=cache_dir)
    try:
        first = lm.complete(*_call("Is snow white?"))
        second = lm.complete(*_call("Is snow white?"))
        assert (lm.hits, lm.misses, lm.stores) == (1, 1, 1)
        assert not first.cached and second.cached
        assert first.text == second.text
        assert lm.backend.loads == 1
    finally:
        lm.close()
    (value,) = raw_entries(cache_dir).values()
    assert isinstance(value, str)  # stored as JSON text, never a pickle
    doc = json.loads(value)
    assert doc["completion"]["text"] == first.text
    assert doc["key"]["lm"]["model_sha256"] == resolve().sha256


def _call(question: str, **params):
    from localsym.lm import Message

    return ([Message(role="user", content=question)], Verdict,
            SamplingParams(**{"max_tokens": 48, **params}))


def test_new_process_hits_the_cache_without_loading_the_model(cache_dir):
    code = f"""
        import json, sys
        from conftest import Verdict
        from localsym.lm import open_lm, llamacpp
        lm = open_lm(cache_dir={str(cache_dir)!r})
        _, c = lm.call("Is snow white?", Verdict, max_tokens=48)
        print(json.dumps({{"text": c.text, "cached": c.cached, "loads": llamacpp.LOADS,
                          "llama_cpp_imported": "llama_cpp" in sys.modules}}))
    """
    first = run_python(code, {"PYTHONPATH": TESTS})
    second = run_python(code, {"PYTHONPATH": TESTS})
    assert first["cached"] is False and first["loads"] == 1
    assert second == {"text": first["text"], "cached": True, "loads": 0,
                      "llama_cpp_imported": False}


def test_replay_of_an_unrecorded_call_names_the_call(cache_dir):
    lm = CachedLM(scripted(), cache_dir=cache_dir, mode="replay")
    with pytest.raises(CacheMissError) as err:
        lm.complete(*_call("Was this recorded?"))
    assert "Was this recorded?" in str(err.value) and "Verdict" in str(err.value)
    assert "readwrite" in err.value.fix
    assert lm.backend.calls == 0


def test_replay_of_recorded_entries_needs_no_model_file(cache_dir, tmp_path):
    recorder = open_lm(cache_dir=cache_dir)
    recorded = recorder.complete(*_call("Is grass green?"))
    recorder.close()
    ref = resolve()
    gone = ModelRef(name=ref.name, path=tmp_path / "no-such-file.gguf", sha256=ref.sha256,
                    source=ref.source)
    replay = CachedLM(LlamaCpp(gone, cache_dir=cache_dir), cache_dir=cache_dir, mode="replay")
    replayed = replay.complete(*_call("Is grass green?"))
    assert replayed.text == recorded.text and replayed.cached
    assert replay.backend.loads == 0


def test_mode_from_environment_and_off_mode(cache_dir, monkeypatch):
    monkeypatch.setenv("LOCALSYM_CACHE_MODE", "off")
    lm = CachedLM(scripted(), cache_dir=cache_dir)
    assert lm.mode == "off"
    lm.complete(*_call("a"))
    lm.complete(*_call("a"))
    assert lm.backend.calls == 2 and not (cache_dir / "calls").exists()
    monkeypatch.setenv("LOCALSYM_CACHE_MODE", "sometimes")
    with pytest.raises(ConfigError):
        CachedLM(scripted(), cache_dir=cache_dir)


def test_location_comes_from_the_environment(cache_dir):
    lm = CachedLM(scripted())
    lm.complete(*_call("where?"))
    assert lm.directory == cache_dir / "calls" and len(raw_entries(cache_dir)) == 1


def test_everything_that_can_change_an_answer_changes_the_key(cache_dir):
    lm = CachedLM(scripted(), cache_dir=cache_dir)
    base = lm.key(*_call("q"))
    variants = [_call("q2"), _call("q", seed=1), _call("q", max_tokens_limit=2048),
                _call("q", temperature=0.5), _call("q", top_p=0.9)]
    keys = {lm.key(*v) for v in variants}
    assert base not in keys and len(keys) == len(variants)
    other_model = CachedLM(ScriptedLM(lambda m, p: ANSWER, name="other"), cache_dir=cache_dir)
    assert other_model.key(*_call("q")) != base
    messages, _, params = _call("q")
    from conftest import BaseModel

    class Other(BaseModel):
        label: str

    assert lm.key(messages, Other, params) != base
    assert lm.key(*_call("q")) == base  # and nothing else does


def test_invalid_output_is_an_error_never_stored_as_an_answer(cache_dir):
    lm = CachedLM(scripted('{"label": "maybe", "reason": "x"}'), cache_dir=cache_dir)
    with pytest.raises(InvalidOutputError) as err:
        lm.complete(*_call("q"))
    assert "label" in str(err.value)
    (value,) = raw_entries(cache_dir).values()
    assert "completion" not in json.loads(value)  # the failure is remembered, not the output
    with pytest.raises(InvalidOutputError) as again:  # the same call fails the same way,
        lm.complete(*_call("q"))
    assert str(again.value) == str(err.value) and lm.backend.calls == 1  # from the cache


@pytest.mark.parametrize("planted", ["not json", '{"completion": {"text": "{}"}}', b"\x80\x04K."])
def test_corrupt_entry_is_ignored_and_recomputed(cache_dir, planted, caplog):
    lm = CachedLM(scripted(), cache_dir=cache_dir)
    key = lm.key(*_call("q"))
    with diskcache.Cache(str(cache_dir / "calls")) as c:
        c.set(key, planted)  # a bytes value is what a planted pickle payload looks like
    assert lm.complete(*_call("q")).text == ANSWER
    assert lm.backend.calls == 1 and lm.misses == 1
    assert any("recomputing" in r.message or "corrupt" in r.message for r in caplog.records)
    assert json.loads(raw_entries(cache_dir)[key])["completion"]["text"] == ANSWER


def _hammer(args):
    cache_dir, worker = args
    lm = CachedLM(ScriptedLM(lambda m, p: '{"label":"yes","reason":"%s"}' % m[-1].content),
                  cache_dir=cache_dir)
    texts = {}
    for i in range(60):
        q = f"q{(i * (worker + 1)) % 40}"  # overlapping keys across workers
        texts[q] = lm.complete(*_call(q)).text
    lm.close()
    return texts


def test_four_processes_share_one_cache_directory(cache_dir):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.map(_hammer, [(str(cache_dir), w) for w in range(4)])
    for texts in results:
        for q, text in texts.items():
            assert json.loads(text)["reason"] == q
    entries = raw_entries(cache_dir)
    asked = set().union(*results)
    assert len(entries) == len(asked)
    for value in entries.values():
        Verdict.model_validate_json(json.loads(value)["completion"]["text"])


def test_counts_persist_across_processes(cache_dir):
    for _ in range(2):
        lm = CachedLM(scripted(), cache_dir=cache_dir)
        lm.complete(*_call("q"))
        lm.close()
    from localsym.lm.store import JsonStore

    store = JsonStore(cache_dir / "calls")
    assert store.counts() == {"hits": 1, "misses": 1, "stores": 1}


def test_a_truncated_answer_fails_again_from_the_cache(cache_dir):
    from localsym.errors import TruncatedOutputError

    lm = open_lm(cache_dir=cache_dir)
    try:
        for _ in range(2):
            with pytest.raises(TruncatedOutputError, match="cut off after 4 tokens"):
                lm.complete(*_call("Why is the sky blue?", max_tokens=2, max_tokens_limit=4))
        assert (lm.hits, lm.misses) == (1, 1)
    finally:
        lm.close()


class _Evil:
    """What an attacker plants: a pickle that runs code when loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.mkdir, (self.marker,))


def test_a_planted_pickle_row_is_never_unpickled(cache_dir, tmp_path, caplog):
    lm = CachedLM(scripted(), cache_dir=cache_dir)
    key = lm.key(*_call("q"))
    marker = tmp_path / "pwned"
    with diskcache.Cache(str(cache_dir / "calls")) as c:  # plain diskcache pickles the object
        c.set(key, _Evil(str(marker)))
    for _ in range(2):
        fresh = CachedLM(scripted(), cache_dir=cache_dir)
        assert fresh.complete(*_call("q")).text == ANSWER
    assert not marker.exists()  # never executed
    assert sum("never unpickling" in r.message for r in caplog.records) == 1  # reported once
    assert json.loads(raw_entries(cache_dir)[key])["completion"]["text"] == ANSWER  # recomputed


def test_a_full_disk_is_a_clear_error_and_keeps_every_acknowledged_entry(cache_dir):
    """The disk fills up (a file-size limit stands in for it) in the middle of a run of writes:
    each failed write is a CacheError naming the cause and the fix; every write that returned
    is still there afterwards and the database passes SQLite's integrity check."""
    directory = cache_dir / "full"
    out = run_python(f"""
        import json, os, resource, signal
        from localsym.errors import CacheError
        from localsym.lm.store import JsonStore
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
        store = JsonStore({str(directory)!r})
        acked, errors = [], []
        for i in range(20):
            store.set(f"small{{i}}", {{"i": i}}); acked.append(f"small{{i}}")
        used = sum(f.stat().st_size for f in __import__("pathlib").Path({str(directory)!r}).rglob("*"))
        resource.setrlimit(resource.RLIMIT_FSIZE, (used + 200_000, used + 200_000))
        for i in range(200):
            key = f"big{{i}}" if i % 2 else f"mid{{i}}"
            try:
                store.set(key, {{"i": i, "pad": "x" * (40_000 if i % 2 else 3_000)}})
                acked.append(key)
            except CacheError as err:
                errors.append(str(err))
        print(json.dumps({{"acked": acked, "errors": errors}}))
    """)
    assert out["errors"], "the limit was never reached"
    assert all("cannot write to the cache" in e and "free disk space" in e for e in out["errors"])
    from localsym.lm.store import JsonStore

    store = JsonStore(directory)
    for key in out["acked"]:
        assert store.get(key) is not None, key
    import sqlite3

    with sqlite3.connect(directory / "cache.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.set("after", {"ok": True})  # with space again, the cache works on
    assert store.get("after") == {"ok": True}
