"""The in-process backend: a GGUF model run by llama.cpp (llama-cpp-python), every answer forced
into a JSON schema by an outlines-core index.

Why a decoding loop of our own rather than ``outlines.Generator``: outlines resets the llama.cpp
context after every call (losing the shared-prefix KV cache) and samples through llama-cpp-python's
Python logits-processor path, measured here at 0.67x the free speed. Here the same outlines-core
``Index``/``Guide`` constrain a plain loop: the raw argmax is taken when the guide accepts it and
the guide's token mask is applied only when it does not, so constrained decoding runs at the free
speed. Compiled indexes are stored on disk (``IndexStore``), so a second process does not recompile.

Batching: ``complete_batch`` decodes up to ``n_seq`` calls together, one KV stream each
(``streams.Streams``); a decode step evaluates one token of every running call in one
``llama_decode``, and a finished call's stream goes to the next waiting one. ``complete`` is a
batch of one.

Determinism: greedy by default; sampling draws from a numpy generator seeded per call (each call
its own). Under ``decoding="v2"`` (the default) the prompt is tokenized message by message and
each message is evaluated in ``prefill_chunk``-token chunks aligned to its own start (under
"v1", the scheme before it: chunks aligned at position 0), one stream at a time, and only whole
chunks evaluated the same way (same tokens, same positions, same cuts) are reused, from the
call's own stream or copied from another; the text the schema forces is appended in one
evaluation of the call's own (``decoder``); a stream's logits do not depend on the other streams
in a step (a sliding-window model's do: its steps are decoded one sequence at a time). So an
answer never depends on the calls before it or beside it (tests/test_batch.py).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
from pydantic import BaseModel

from localsym.errors import ConfigError, ContextOverflowError, ModelCorruptError
from localsym.lm import models
from localsym.lm.base import LM, Call, Completion, Message, SamplingParams, as_messages, unwrap
from localsym.lm.bounded import StringCounter, UnitTable, relaxed_schema
from localsym.lm.chat import ChatRenderer
from localsym.lm.decoder import DecodingLoop
from localsym.lm.decoding import ForcedText, TokenBytes, TokenChooser
from localsym.lm.gguf import GGUFFormatError, context_length, read_metadata
from localsym.lm.schema_index import IndexStore, vocabulary
from localsym.lm.store import default_cache_dir, library_versions
from localsym.lm.streams import (KV_BUDGET_MIB, MAX_SLOTS, Streams, chunk_starts, default_slots,
                                 default_threads)

log = logging.getLogger(__name__)

# JSON whitespace between tokens: at most one space (scheme v1); exactly one space wherever
# JSON allows whitespace (v2: so a brace, a key, a colon or a comma is text the schema decides,
# never a choice). Decided on measurement: with no whitespace at all the embedded model writes
# free-text strings two to four times as long (3 of 6 yes/no reasons ran to their limit); with
# one space they stay as short as under v1. Unbounded whitespace lets a small model loop on
# newlines until the budget runs out.
COMPACT_WHITESPACE = r"[ ]?"
ONE_SPACE = " "
# How a call is evaluated (part of the cache key): v1, a prompt cut in chunks from position 0
# and every answer token decoded on its own; v2, a prompt cut at its messages (a shared prefix
# of messages is reused whole) and the text the schema forces appended in one evaluation.
DECODINGS = ("v1", "v2")
# llama_token_attr bits of tokens that never belong in an answer: unknown, unused, control.
_SKIP_ATTRS = 1 | 2 | 8
LOADS = 0  # model loads in this process, all instances (tests assert a cached run makes none)
START_CTX = 1024  # a stream's context to begin with; grown as the calls need, up to the cap


class LlamaCpp(DecodingLoop, LM):
    """A GGUF model in this process. Nothing is loaded until a call needs the model.

    model: a registry name, a path, or a GGUF file name in a models directory (default: the
    embedded SmolLM2-135M). n_ctx: the context of one call; default START_CTX tokens, grown (the
    streams made anew) when a call needs more, up to the model's trained context capped at
    ``n_ctx_cap``, so the KV cache is the size the calls need. n_seq: calls decoded together
    (``complete_batch``); default as many as fit ``kv_budget_mib`` of KV cache, at most 8.
    n_threads: default one per free core (see ``streams.default_threads``). n_gpu_layers:
    layers to offload (-1: all) when llama-cpp-python was built with a GPU backend.
    chat_format: override the registry's (a llama-cpp-python format name such as "chatml", or
    a Jinja2 template string).
    """
    local = True  # runs in this process (its speed is measured for budget estimates)

    def __init__(self, model=None, *, n_ctx: int | None = None, n_ctx_cap: int = 4096,
                 n_seq: int | None = None, kv_budget_mib: int = KV_BUDGET_MIB,
                 n_threads: int | None = None, n_batch: int = 512, prefill_chunk: int | None = None,
                 n_gpu_layers: int = 0,
                 chat_format: str | None = None, cache_dir=None,
                 whitespace: str | None = None, decoding: str = "v2", reuse: bool = True):
        self.ref = models.resolve(model)
        if n_ctx is not None and n_ctx < 16:
            raise ConfigError(f"n_ctx={n_ctx} is too small", "use at least a few hundred tokens")
        self.n_ctx_request, self.n_ctx_cap = n_ctx, n_ctx_cap
        if n_seq is not None and not 1 <= n_seq <= 64:
            raise ConfigError(f"n_seq={n_seq} must be in [1, 64]", "use e.g. 8")
        self.n_seq_request, self.kv_budget_mib = n_seq, kv_budget_mib
        self.n_threads_request = n_threads
        self.n_batch = n_batch
        prefill_chunk = prefill_chunk or min(64, n_batch)
        if not 1 <= prefill_chunk <= n_batch:
            raise ConfigError(f"prefill_chunk={prefill_chunk} must be in [1, n_batch={n_batch}]",
                              "use e.g. 64")
        self.prefill_chunk = prefill_chunk
        self.n_gpu_layers = n_gpu_layers
        self.chat_format = chat_format or self.ref.chat_format
        self.cache_dir = default_cache_dir(cache_dir)
        if decoding not in DECODINGS:
            raise ConfigError(f"unknown decoding {decoding!r}", f"use one of {DECODINGS}")
        self.decoding, self.reuse = decoding, reuse
        self.whitespace = whitespace if whitespace is not None else \
            (COMPACT_WHITESPACE if decoding == "v1" else ONE_SPACE)
        self.indexes = IndexStore(self.cache_dir / "indexes")
        self._llama: Any = None
        # one llama.cpp context does one thing at a time: calls from several threads (a served
        # agent answering while it retrains) take turns
        self._lock = threading.RLock()
        self._identity: dict | None = None
        self._render: Any = None  # made on load
        self._eos: Any = None
        self._vocabulary: Any = None
        self._forced: Any = None
        self._units: UnitTable | None = None  # made when a schema first has a counted bound
        self.relax = True  # long free-text bounds counted by the decoder, not unrolled (bounded)
        self.tokens: TokenBytes | None = None  # each token's bytes, made on load
        self._chooser = TokenChooser(lambda: self.tokens.pieces())  # how the next token is picked
        self._streams: Streams | None = None  # the llama.cpp context, made on load
        self.loads = 0

    # -- identity (cache keys): known without loading the model ------------------------------
    def identity(self) -> dict:
        if self._identity is None:  # computed once: hashing a user's file is not a per-call cost
            self._identity = {
                "backend": "llama.cpp",
                "model_sha256": models.model_sha256(self.ref, self.cache_dir),
                "chat_format": self.chat_format, "whitespace": self.whitespace,
                "n_batch": self.n_batch, "prefill_chunk": self.prefill_chunk}
            if self.decoding != "v1":  # v1's keys are the keys it always had
                self._identity["decoding"] = self.decoding
        return self._identity

    def describe(self) -> str:
        return self.ref.name

    # -- loading ------------------------------------------------------------------------------
    @property
    def llama(self):
        """The llama.cpp model (llama-cpp-python's ``LlamaModel``), loaded on first use."""
        self.load()
        return self._llama

    @property
    def n_ctx(self) -> int:
        """The context of one call."""
        self.load()
        return self._streams.n_ctx

    @property
    def batch_hint(self) -> int:  # type: ignore[override]
        """The calls decoded together (known without loading the model where it was asked for;
        else the streams made, or the most there can be)."""
        if self._streams is not None:
            return len(self._streams.slots)
        return self.n_seq_request or MAX_SLOTS

    @property
    def n_seq(self) -> int:
        """How many calls are decoded together."""
        self.load()
        return len(self._streams.slots)

    @property
    def prompt_tokens_submitted(self) -> int:
        return self._streams.prompt_tokens_submitted if self._streams else 0

    @property
    def prompt_tokens_evaluated(self) -> int:
        """Prompt tokens evaluated (the rest were reused from the KV cache)."""
        return self._streams.prompt_tokens_evaluated if self._streams else 0

    @property
    def eval_seconds(self) -> float:
        """Seconds inside llama.cpp's evaluation (prefill and decode)."""
        return self._streams.eval_seconds if self._streams else 0.0

    def load(self) -> None:
        """Load the model now (once; later calls return at once)."""
        if self._llama is None:
            with self._lock:
                if self._llama is None:
                    self._load()

    def usage(self) -> dict[str, float]:
        streams = self._streams
        return {"model_loads": self.loads, "eval_seconds": round(self.eval_seconds, 2),
                "prompt_tokens_submitted": self.prompt_tokens_submitted,
                "prompt_tokens_evaluated": self.prompt_tokens_evaluated,
                "answer_tokens": streams.tokens_decoded if streams else 0,
                "answer_passes": streams.answer_passes if streams else 0}

    def _load(self) -> None:
        global LOADS
        path = models.verified_path(self.ref, self.cache_dir)
        try:
            meta = read_metadata(path)
        except GGUFFormatError as err:
            raise ModelCorruptError(
                f"model file {path} is not a usable GGUF file: {err}",
                f"replace it with a valid GGUF file ({self.ref.install_hint()})")
        render = ChatRenderer.for_format(self.chat_format, self.ref.name, meta)
        self._meta = meta
        self._ctx_cap = min(context_length(meta) or 4096, self.n_ctx_cap)
        n_ctx = self.n_ctx_request or min(START_CTX, self._ctx_cap)
        n_seq = self.n_seq_request or default_slots(n_ctx, meta, self.kv_budget_mib)
        threads = self.n_threads_request or default_threads()
        import llama_cpp  # noqa: PLC0415 (the llama.cpp library loads only when a model does)
        from llama_cpp import _internals  # noqa: PLC0415 (the llama.cpp library loads only when a model does)

        logging.getLogger("llama-cpp-python").setLevel(logging.CRITICAL)
        start = time.perf_counter()
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = self.n_gpu_layers
        try:
            model = _internals.LlamaModel(path_model=str(path), params=params, verbose=False)
            streams = Streams(model, n_slots=n_seq, n_ctx=n_ctx, n_batch=self.n_batch,
                              chunk=self.prefill_chunk, n_threads=threads)
        except (ValueError, RuntimeError) as err:
            raise ModelCorruptError(f"llama.cpp could not load {path}: {err}",
                                    "check that the file is a complete GGUF model supported by "
                                    f"llama-cpp-python {llama_cpp.__version__}, and that "
                                    f"{n_seq} x {n_ctx} tokens of KV cache fit in memory "
                                    "(lower n_ctx or n_seq)") from None
        self.n_threads = threads
        log.info("loaded %s (n_ctx=%d, %d sequences, %d threads) in %.2fs", path.name,
                 streams.n_ctx, n_seq, threads, time.perf_counter() - start)
        streams.reuse = self.reuse
        self._llama, self._streams, self._eos = model, streams, model.token_eos()
        self.tokens = TokenBytes(model)
        self._forced = ForcedText(self.tokens.pieces, lambda text: model.tokenize(
            text, add_bos=False, special=False), self._eos, self.indexes.table_for)
        self._render = render.bind(model)
        self.loads += 1
        LOADS += 1

    def _fit(self, jobs: list) -> None:
        """Grow the streams' context to hold the longest of ``jobs`` (messages, guide, params,
        ...) with its answer at its token limit, up to the cap (the context is made anew, its
        reusable prefixes lost; answers do not change: each stream is separate)."""
        streams = self._streams
        if streams is None or self.n_ctx_request or streams.n_ctx >= self._ctx_cap or not jobs:
            return
        needed = max(len(self._tokens_of(as_messages(m))) + max(p.max_tokens_limit or 0,
                                                                 p.max_tokens)
                     for m, _, p, *_ in jobs)
        if needed <= streams.n_ctx:
            return
        n_ctx = min(self._ctx_cap, max(needed, 2 * streams.n_ctx))
        n_seq = self.n_seq_request or default_slots(n_ctx, self._meta, self.kv_budget_mib)
        # the old streams go first: both at once would be the peak of the whole run
        old_slots, old_ctx = len(streams.slots), streams.n_ctx
        streams.close()
        try:
            grown = Streams(self._llama, n_slots=n_seq, n_ctx=n_ctx, n_batch=self.n_batch,
                            chunk=self.prefill_chunk, n_threads=self.n_threads)
        except Exception:  # e.g. out of memory: go on at the old size, the call then says why
            grown, n_seq = Streams(self._llama, n_slots=old_slots, n_ctx=old_ctx,
                                   n_batch=self.n_batch, chunk=self.prefill_chunk,
                                   n_threads=self.n_threads), old_slots
        grown.carry(streams)
        self._streams = grown
        log.info("grew the context to %d tokens (%d sequences)", grown.n_ctx, n_seq)

    def _tokens_of(self, messages: list[Message]) -> list[int]:
        if self.decoding == "v1":
            return self.render(messages)[1]
        return self._render.render_segments(messages)[1]

    # -- prompt ---------------------------------------------------------------------------------
    def render(self, messages: list[Message]) -> tuple[str, list[int]]:
        """The prompt text for ``messages`` in the model's chat format, and its tokens."""
        self.llama  # the model, and its chat format with it, load on first use
        return self._render.render(messages)

    # -- structured generation ------------------------------------------------------------------
    def _index_for(self, schema: type[BaseModel]):
        """The compiled outlines-core Index for a schema (``IndexStore.index_for``)."""
        return self.indexes.index_for(schema, self.whitespace, {
            "model_sha256": self.identity()["model_sha256"], "eos": self._eos,
            "skip_attrs": _SKIP_ATTRS, "outlines_core": library_versions()["outlines-core"]},
            self._vocab, bounded_numbers=self.decoding != "v1", relax=self.relax)

    def _counter(self, schema: type[BaseModel]) -> StringCounter | None:
        """What counts the long free-text bounds ``schema``'s index leaves out (``bounded``)."""
        bounds = relaxed_schema(schema)[1] if self.relax else None
        if not bounds:
            return None
        if self._units is None:
            self._units = UnitTable(self.tokens.pieces())
        return StringCounter(bounds, self._units)

    def _vocab(self):
        """The outlines-core Vocabulary of the model, control tokens left out."""
        if self._vocabulary is None:
            import llama_cpp  # noqa: PLC0415 (the llama.cpp library loads only when a model does)

            vocab = self.llama.vocab
            self._vocabulary = vocabulary(self.tokens.pieces(), self._eos, lambda tok: bool(
                llama_cpp.llama_vocab_get_attr(vocab, tok) & _SKIP_ATTRS))
        return self._vocabulary

    def complete(self, messages: list[Message], schema: type[BaseModel],
                 params: SamplingParams) -> Completion:
        return unwrap(self.complete_batch([Call(messages, schema, params)])[0])

    def complete_batch(self, calls, on_done=None) -> list[Completion | Exception]:
        """Decode the calls together, up to ``n_seq`` at a time; a finished call's slot goes to
        the next waiting one. Each answer equals the call's answer alone (see ``streams``)."""
        from outlines_core import Guide  # noqa: PLC0415 (the schema compiler loads only when a schema is compiled)

        self.llama  # load before the index (the index key needs the eos token)
        with self._lock:
            indexes = [self._index_for(c.schema) for c in calls]
            jobs = [(c.messages, Guide(index), c.params, index, self._counter(c.schema))
                    for c, index in zip(calls, indexes)]
            self._fit(jobs)
            return self._decode(jobs, on_done)

    def complete_text(self, messages, params: SamplingParams | None = None) -> Completion:
        """Free-text generation (for text a person reads, and for benchmarks): no schema."""
        return unwrap(self.complete_text_batch([messages], params)[0])

    def complete_text_batch(self, batch: list, params: SamplingParams | None = None
                            ) -> list[Completion | Exception]:
        self.load()
        with self._lock:
            jobs = [(as_messages(m), None, params or SamplingParams(), None) for m in batch]
            self._fit(jobs)
            return self._decode(jobs)

    def logprob(self, messages, text: str) -> tuple[float, int]:
        """Log-probability of ``text`` as the answer to ``messages``, from the logits."""
        with self._lock:
            return self._logprob(messages, text)

    def _logprob(self, messages, text: str) -> tuple[float, int]:
        llm = self.llama
        target_len = len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
        self._fit([(messages, None, SamplingParams(max_tokens=max(1, target_len)), None)])
        streams = self._streams
        if self.decoding == "v1":
            _, tokens = self.render(as_messages(messages))
            chunks = None
        else:
            _, tokens, segments = self._render.render_segments(as_messages(messages))
            chunks = chunk_starts(len(tokens), self.prefill_chunk, segments)
        target = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        if len(tokens) + len(target) > streams.n_ctx:
            raise ContextOverflowError(
                f"prompt of {len(tokens)} tokens plus a {len(target)}-token answer exceeds the "
                f"context of {streams.n_ctx} tokens", "shorten the prompt or raise n_ctx")
        slot, begin = streams.acquire(tokens, chunks)
        try:
            logits = streams.prefill(slot, tokens, begin, chunks)
            total = 0.0
            for k, token in enumerate(target):
                x = logits.astype(np.float64)
                top = x.max()
                total += float(x[token] - top - np.log(np.exp(x - top).sum()))
                if k + 1 < len(target):
                    (logits,) = streams.step([(slot, token, len(tokens) + k)])
        except BaseException:
            streams.forget(slot)
            raise
        streams.release(slot)
        return total, len(target)

    def close(self) -> None:
        if self._streams is not None:
            self._streams.close()
            self._streams = None
        if self._llama is not None:
            self._llama.close()
            self._llama = None
