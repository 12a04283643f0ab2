"""One llama.cpp context holding several independent sequences: the machinery under batched
decoding.

Each sequence lives in its own KV stream (``kv_unified=False``). Measured on the embedded model:
with separate streams a sequence's logits are bit-identical whether it is decoded alone or next
to seven others, while a unified KV buffer moves them by up to 0.5 (and changed 1 greedy answer
in 8). So a batched answer is the one-at-a-time answer, and a cached run stays reproducible
whatever the batch held.

A prompt is evaluated in ``chunk``-token pieces, aligned at position 0 or at the start of each
of its segments (its messages: ``chunk_starts``), one sequence at a time (evaluating several
sequences' chunks in one ``llama_decode`` also changes logits, and is no faster); a decode step
evaluates one token of every running sequence in one ``llama_decode``, which is where batching
pays. Whole chunks already in a stream, cut the same way, are reused; a prefix that another
stream holds (the node's prompt and demonstrations) is copied from it (``llama_memory_seq_cp``)
rather than evaluated again; a memory that cannot give that prefix whole (a hole left by a
sliding window, a recurrent state that cannot be cut) is evaluated again instead.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

MAX_SLOTS = 8  # 8 sequences give 2.1x the tokens/s of one on 2 cores; 16 only 2.4x
# default KV memory of all streams together: 8 streams up to 2048 tokens on the embedded model,
# 5 at 4096, so a training run stays under 1 GB (BENCHMARKS.md, "Memory")
KV_BUDGET_MIB = 512


def available_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def busy_cores(window: float = 0.2) -> float:
    """Cores kept busy by other processes right now (from /proc/stat over ``window`` seconds,
    while this process sleeps); 0 where /proc/stat is not available."""
    def sample():
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait
    try:
        total0, idle0 = sample()
        time.sleep(window)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    if total1 <= total0:
        return 0.0
    return (1 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1)


def default_threads() -> int:
    """One thread per core that is free. llama.cpp's threads spin while they wait for each
    other, so a thread more than the free cores does not slow a run a little but many times
    (a training step of 50 s took 700+ s next to another CPU-bound process). Cores busy with
    other work at load time are left to it, with a warning; ``LOCALSYM_THREADS`` overrides."""
    if os.environ.get("LOCALSYM_THREADS"):
        return max(1, int(os.environ["LOCALSYM_THREADS"]))
    cores = available_threads()
    busy = int(round(busy_cores()))
    threads = max(1, cores - busy)
    if threads < cores:
        log.warning("%d of %d cores are busy with other processes: llama.cpp will use %d "
                    "thread(s). Run alone for full speed, or set LOCALSYM_THREADS", busy, cores,
                    threads)
    return threads


def kv_bytes_per_token(meta: dict) -> int:
    """Bytes of f16 KV cache one token takes, from the GGUF metadata (0 if unknown)."""
    arch = meta.get("general.architecture", "")

    def num(key, default=0):
        value = meta.get(f"{arch}.{key}", default)
        return max(value) if isinstance(value, list) and value else int(value or 0)
    layers, embd, heads = num("block_count"), num("embedding_length"), num("attention.head_count")
    kv_heads = num("attention.head_count_kv", heads)
    if not (layers and embd and heads):
        return 0
    k = num("attention.key_length", embd // heads)
    v = num("attention.value_length", embd // heads)
    return layers * kv_heads * (k + v) * 2


def default_slots(n_ctx: int, meta: dict, budget_mib: int = KV_BUDGET_MIB) -> int:
    """How many sequences to decode together: up to MAX_SLOTS, as many as fit the KV budget."""
    per_token = kv_bytes_per_token(meta)
    if not per_token:
        return 1
    return max(1, min(MAX_SLOTS, budget_mib * 2**20 // (n_ctx * per_token)))


def chunk_starts(n: int, chunk: int, segments: list[int] | None = None) -> list[int]:
    """Where the chunks of an ``n``-token prompt start: every ``chunk`` tokens from position 0
    (``segments`` None), or from the start of each segment (a message: see
    ``ChatRenderer.render_segments``), so a prefix of segments is always cut the same way."""
    if not segments:
        return list(range(0, n, chunk))
    bounds = [s for s in segments if s < n] + [n]
    return [c for a, b in zip(bounds, bounds[1:]) for c in range(a, b, chunk)]


@dataclass
class Slot:
    """One KV stream: the prompt tokens it holds, evaluated in chunks starting at ``chunks``,
    and whether a sequence is decoding in it."""

    seq: int
    tokens: list[int] = field(default_factory=list)
    chunks: list[int] = field(default_factory=list)
    busy: bool = False

    def reusable(self, tokens: list[int], chunks: list[int]) -> int:
        """Where evaluating ``tokens`` (to be cut at ``chunks``) in this stream would start: the
        last chunk start of theirs that ends a run of whole chunks this stream evaluated the
        same way (the same tokens, cut at the same places), at most the last token (which is
        always evaluated, for its logits). Only such a prefix has the very KV a fresh
        evaluation would give."""
        held = self.tokens
        n = min(len(held), len(tokens))
        if n == 0:
            return 0
        diff = np.nonzero(np.asarray(held[:n]) != np.asarray(tokens[:n]))[0]
        limit = min(int(diff[0]) if len(diff) else n, len(tokens) - 1)
        mine = self.chunks + [len(held)]
        for k in range(len(chunks) - 1, -1, -1):
            p = chunks[k]
            if p <= limit and p in mine and chunks[:k] == mine[:mine.index(p)]:
                return p
        return 0


class Streams:
    """A llama.cpp context of ``n_slots`` sequences of ``n_ctx`` tokens each."""

    def __init__(self, model, *, n_slots: int, n_ctx: int, n_batch: int, chunk: int,
                 n_threads: int):
        import llama_cpp  # noqa: PLC0415 (the llama.cpp library loads only when a model does)
        from llama_cpp import _internals  # noqa: PLC0415 (the llama.cpp library loads only when a model does)

        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_slots * n_ctx
        params.n_batch = params.n_ubatch = max(n_batch, n_slots)
        params.n_seq_max = n_slots
        params.kv_unified = False
        params.n_threads = params.n_threads_batch = n_threads
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        # a sliding-window model keeps every position's KV, so a shared prefix is whole when
        # copied (llama.cpp otherwise drops the positions outside the window)
        self.sliding = int(llama_cpp.llama_model_n_swa(model.model)) > 0
        params.swa_full = self.sliding
        self.ctx = _internals.LlamaContext(model=model, params=params, verbose=False)
        self.n_ctx = int(llama_cpp.llama_n_ctx_seq(self.ctx.ctx))
        self.n_vocab = model.n_vocab()
        self.chunk = chunk
        self.slots = [Slot(i) for i in range(n_slots)]
        self._batch = llama_cpp.llama_batch_init(max(n_batch, n_slots), 0, 1)
        self.prompt_tokens_submitted = self.prompt_tokens_evaluated = 0
        self.eval_seconds = 0.0  # inside llama_decode, prompts and answers
        self.prefill_seconds = 0.0  # of which prompts
        self.copies = 0  # prefixes copied from another stream
        self.reuse = True  # False: evaluate every prompt whole (benchmarks, tests)
        self.refused_reuse = 0  # reuse the memory could not give (a hole, a partial remove)
        self.tokens_decoded = 0  # answer tokens evaluated in decode steps
        self.forward_passes = 0  # llama_decode calls for prompts
        self.answer_passes = 0  # a sequence's share of the decode calls for answers

    def free(self) -> bool:
        return any(not s.busy for s in self.slots)

    def acquire(self, tokens: list[int], chunks: list[int] | None = None) -> tuple[Slot, int]:
        """A free stream for a sequence with prompt ``tokens`` (cut at ``chunks``; default every
        ``chunk`` tokens from 0), holding as much of the prompt as any stream has; returns it and
        where its prompt evaluation starts."""
        import llama_cpp  # noqa: PLC0415 (the llama.cpp library loads only when a model does)

        chunks = chunks if chunks is not None else chunk_starts(len(tokens), self.chunk)
        free = [s for s in self.slots if not s.busy]
        starts = {s.seq: s.reusable(tokens, chunks) if self.reuse else 0 for s in self.slots}
        # ties go to the lowest stream: running sequences stay packed in few streams, and a
        # decode step costs by the span of streams it touches
        own = max(free, key=lambda s: (starts[s.seq], -s.seq))
        source = max(self.slots, key=lambda s: (starts[s.seq], -s.seq))
        start = starts[own.seq]
        if starts[source.seq] > start:
            # copy the other stream's prefix into the lowest free stream
            own = min(free, key=lambda s: s.seq)
            llama_cpp.llama_memory_seq_rm(self.ctx.memory, own.seq, -1, -1)
            # across streams llama.cpp copies whole streams; the tail is then cut below
            llama_cpp.llama_memory_seq_cp(self.ctx.memory, source.seq, own.seq, -1, -1)
            own.tokens, own.chunks = list(source.tokens), list(source.chunks)
            start = starts[source.seq]
            self.copies += 1
        removed = llama_cpp.llama_memory_seq_rm(self.ctx.memory, own.seq, start, -1)
        if start and (not removed or
                      llama_cpp.llama_memory_seq_pos_min(self.ctx.memory, own.seq) > 0):
            # a memory that cannot cut a stream (recurrent) or has a hole at its start (a
            # window dropped old positions): evaluate the prompt again rather than decode
            # from a context with a hole
            llama_cpp.llama_memory_seq_rm(self.ctx.memory, own.seq, -1, -1)
            own.tokens, own.chunks, start = [], [], 0
            self.refused_reuse += 1
        own.busy = True
        return own, start

    def prefill(self, slot: Slot, tokens: list[int], start: int,
                chunks: list[int] | None = None, prompt: int | None = None) -> np.ndarray:
        """Evaluate ``tokens[start:]`` in ``slot``, chunk by chunk (``chunks``: where each
        starts; default every ``chunk`` tokens from 0); the logits after the last token.
        ``prompt``: how many of the tokens are the prompt (the rest, the start of the answer the
        schema forces, is counted as answer tokens)."""
        chunks = chunks if chunks is not None else chunk_starts(len(tokens), self.chunk)
        t0 = time.perf_counter()
        ends = chunks[1:] + [len(tokens)]
        for s, e in zip(chunks, ends):
            if s >= start:
                piece = tokens[s:e]
                self._decode([(t, s + k, slot.seq, k == len(piece) - 1)
                              for k, t in enumerate(piece)])
                self.forward_passes += 1
        self.eval_seconds += time.perf_counter() - t0
        self.prefill_seconds += time.perf_counter() - t0
        slot.tokens, slot.chunks = list(tokens), list(chunks)
        prompt = len(tokens) if prompt is None else prompt
        self.prompt_tokens_submitted += prompt
        self.prompt_tokens_evaluated += max(0, prompt - start)
        self.tokens_decoded += len(tokens) - max(prompt, start)
        return self.logits(-1)

    def extend(self, slot: Slot, tokens: list[int], position: int) -> np.ndarray:
        """Evaluate an answer's run of tokens (one chosen, the rest forced by its schema) in
        ``slot`` in one decode of its own, from ``position``; the logits after the last."""
        t0 = time.perf_counter()
        self._decode([(t, position + k, slot.seq, k == len(tokens) - 1)
                      for k, t in enumerate(tokens)])
        self.eval_seconds += time.perf_counter() - t0
        self.tokens_decoded += len(tokens)
        self.answer_passes += 1
        return self.logits(len(tokens) - 1)

    def step(self, entries: list[tuple[Slot, int, int]]) -> list[np.ndarray]:
        """One token (slot, token, position) for each running sequence, in one decode; each
        sequence's next logits, in the order of ``entries``. The tokens go in stream order:
        llama.cpp computes attention over the span of streams in a batch, and out of order the
        same step took 1.6-2.3 times as long."""
        if self.sliding and len(entries) > 1:
            # a sliding-window model's logits move with the batch beside them (measured on
            # gemma3): each sequence is decoded on its own, so its answer stays its own
            return [self.step([entry])[0] for entry in entries]
        order = sorted(range(len(entries)), key=lambda j: entries[j][0].seq)
        t0 = time.perf_counter()
        self._decode([(entries[j][1], entries[j][2], entries[j][0].seq, True) for j in order])
        self.eval_seconds += time.perf_counter() - t0
        self.tokens_decoded += len(entries)
        self.answer_passes += len(entries)
        rows: list = [None] * len(entries)
        for row, j in enumerate(order):
            rows[j] = self.logits(row)
        return rows

    def logits(self, i: int) -> np.ndarray:
        import llama_cpp  # noqa: PLC0415 (the llama.cpp library loads only when a model does)

        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx.ctx, i),
                                     shape=(self.n_vocab,)).copy()

    def release(self, slot: Slot) -> None:
        slot.busy = False

    def forget(self, slot: Slot) -> None:
        """Drop what a stream holds (after an error left it in an unknown state)."""
        import llama_cpp  # noqa: PLC0415 (the llama.cpp library loads only when a model does)

        llama_cpp.llama_memory_seq_rm(self.ctx.memory, slot.seq, -1, -1)
        slot.tokens, slot.chunks, slot.busy = [], [], False

    def _decode(self, entries) -> None:
        import llama_cpp  # noqa: PLC0415 (the llama.cpp library loads only when a model does)

        b = self._batch
        b.n_tokens = len(entries)
        for j, (token, pos, seq, logits) in enumerate(entries):
            b.token[j], b.pos[j], b.n_seq_id[j], b.logits[j] = token, pos, 1, logits
            b.seq_id[j][0] = seq
        code = llama_cpp.llama_decode(self.ctx.ctx, b)
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code}")

    COUNTERS = ("prompt_tokens_submitted", "prompt_tokens_evaluated", "eval_seconds",
                "prefill_seconds", "copies", "refused_reuse", "tokens_decoded", "forward_passes",
                "answer_passes")

    def carry(self, old: "Streams") -> None:
        """Go on from ``old``'s counters and settings (the streams made anew, larger)."""
        for name in self.COUNTERS:
            setattr(self, name, getattr(old, name))
        self.reuse = old.reuse

    def close(self) -> None:
        import llama_cpp  # noqa: PLC0415 (the llama.cpp library loads only when a model does)

        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        self.ctx.close()
