"""The disk cache: every LLM call memoized, so a run is deterministic and a re-run is nearly free.

Key: sha256 of the canonical JSON of everything that can change an answer (the LM's identity with
its model file's sha256, the messages, the output schema, every sampling param with the seed, the
versions of the libraries that decode, and a key-format version). Value: a JSON string, never a
pickle (diskcache stores ``str`` values as text). Storage is diskcache's ``Cache`` (SQLite), which
several processes may share; a write that fails raises instead of being dropped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Literal, get_args

from pydantic import BaseModel, ValidationError

from localsym.errors import CacheMissError, ConfigError, InvalidOutputError, TruncatedOutputError
from localsym.lm.base import (LM, Call, Completion, Message, SamplingParams, as_messages, schema_of,
                              unwrap, validate_output)
from localsym.lm.store import (JsonStore, ReadOnlyStore, canonical_json, default_cache_dir,
                               library_versions, sha256_hex)

log = logging.getLogger(__name__)

# Bump when anything that shapes an answer changes in localsym itself (decoding loop, whitespace
# rule, vocabulary filter, key layout): old entries then simply stop matching.
KEY_FORMAT = 2  # 2: token bytes read whole (see decoding.TokenBytes)
CacheMode = Literal["readwrite", "replay", "off"]
# Failures that depend only on the call (its messages, schema, params and model), so a re-run
# would fail the same way: cached like answers. (A context overflow depends on n_ctx, which is not
# part of the key, so it is not cached.)
CACHED_FAILURES = {cls.__name__: cls for cls in (TruncatedOutputError, InvalidOutputError)}
MODES: tuple[str, ...] = get_args(CacheMode)


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
        chosen = mode or os.environ.get("LOCALSYM_CACHE_MODE") or "readwrite"
        if chosen not in MODES:
            raise ConfigError(f"unknown cache mode {chosen!r}", f"use one of {', '.join(MODES)}")
        self.mode: CacheMode = chosen  # type: ignore[assignment]
        self.directory = default_cache_dir(cache_dir) / "calls"
        self._store: Any = None  # a JsonStore, a ReadOnlyStore (replay) or a test's cassette
        self.hits = self.misses = self.stores = 0
        self.tokens_made = 0  # prompt + answer tokens of the calls made (cache misses)
        self._counts_lock = threading.Lock()
        self._flushed = {"hits": 0, "misses": 0, "stores": 0}

    @property
    def store(self) -> Any:
        if self._store is None:  # replay only reads: it opens the directory read-only
            self._store = ReadOnlyStore(self.directory) if self.mode == "replay" else \
                JsonStore(self.directory)
        return self._store

    def identity(self) -> dict:
        return self.backend.identity()

    def describe(self) -> str:
        return self.backend.describe()

    @property
    def batch_hint(self) -> int:  # type: ignore[override]
        return self.backend.batch_hint

    @property
    def max_concurrency(self) -> int:  # type: ignore[override]
        """Calls the backend can take at once (an HTTP server's slots); 1 for a local model."""
        return self.backend.max_concurrency

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
            # a batch's answers share its wall time; one call has its own
            seconds = time.perf_counter() - start if len(misses) == 1 else None
            results[i] = result = self._record(calls[i], *keys[i], result, seconds)
            if on_done is not None:
                on_done(i, result)

        self.backend.complete_batch([calls[i] for i in misses], stored)
        return results

    def _record(self, call, key: str, doc: dict, result, seconds: float | None):
        """Record what the backend gave for ``call``: an answer that validates (with its own
        wall time when it ran alone), or a failure that repeats; the result as recorded."""
        if not isinstance(result, Exception):
            try:
                validate_output(call.schema, result.text)  # never store what does not validate
            except InvalidOutputError as err:
                result = err
        if isinstance(result, tuple(CACHED_FAILURES.values())):
            # the same call fails the same way every time: remember the failure, not an answer
            self.store.set(key, {"failure": {"type": type(result).__name__,
                                             "cause": getattr(result, "cause", ""),
                                             "fix": getattr(result, "fix", "")},
                                 "key": doc})
            self._add('stores')
        elif not isinstance(result, Exception):
            if seconds is not None:
                result = result.model_copy(update={"seconds": seconds})
            with self._counts_lock:
                self.tokens_made += result.prompt_tokens + result.completion_tokens
            self.store.set(key, {"completion": result.model_dump(), "key": doc})
            self._add('stores')
        return result

    def _lookup(self, key: str, schema: type[BaseModel]) -> Completion | Exception | None:
        """The recorded answer (or recorded failure) of a call; None on a miss."""
        entry = self.store.get(key)
        if entry is None:
            return None
        failure = entry.get("failure")
        if isinstance(failure, dict) and failure.get("type") in CACHED_FAILURES:
            self._add('hits')
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

    @property
    def local(self) -> bool:  # type: ignore[override]
        return self.backend.local

    def load(self) -> None:
        self.backend.load()

    def usage(self) -> dict[str, float]:
        """Calls served from the cache (hits), made (misses), their tokens, and the backend's own
        counters."""
        return {"hits": self.hits, "misses": self.misses, "tokens_made": self.tokens_made,
                **self.backend.usage()}

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
