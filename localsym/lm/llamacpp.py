"""The in-process backend: a GGUF model run by llama.cpp (llama-cpp-python), every answer forced
into a JSON schema by an outlines-core index.

Why a decoding loop of our own rather than ``outlines.Generator``: outlines resets the llama.cpp
context after every call (losing the shared-prefix KV cache) and samples through llama-cpp-python's
Python logits-processor path, measured here at 0.67x the free speed. Here the same outlines-core
``Index``/``Guide`` constrain a plain loop: the raw argmax is taken when the guide accepts it and
the guide's token mask is applied only when it does not, so constrained decoding runs at the free
speed. Compiled indexes are stored on disk (``IndexStore``), so a second process does not recompile.

Determinism: greedy by default; sampling draws from a numpy generator seeded per call. The prompt
is evaluated in ``prefill_chunk``-token chunks aligned at position 0 (64 by default), and only
whole chunks that an earlier call evaluated the same way (same tokens, same positions, same
batch) are reused from the KV cache, so an answer never depends on the calls before it. Calls
that share a prefix (one node over a batch, one meta-prompt over the nodes) reuse it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time

import numpy as np
from pydantic import BaseModel

from localsym.errors import (ChatTemplateError, ConfigError, ContextOverflowError,
                             ModelCorruptError, TruncatedOutputError)
from localsym.lm import models
from localsym.lm.base import LM, Completion, Message, SamplingParams, canonical_json, schema_of
from localsym.lm.cache import default_cache_dir, library_versions, sha256_hex
from localsym.lm.gguf import GGUFFormatError, context_length, read_metadata
from localsym.lm.schema_index import IndexStore

log = logging.getLogger(__name__)

# JSON whitespace allowed between tokens: at most one space. Unbounded whitespace lets a small
# model loop on newlines until the budget runs out.
COMPACT_WHITESPACE = r"[ ]?"
# llama_token_attr bits of tokens that never belong in an answer: unknown, unused, control.
_SKIP_ATTRS = 1 | 2 | 8
CLOSING_ALLOWANCE = 64  # tokens allowed to close the JSON after max_tokens_limit (on_limit=close)
LOADS = 0  # model loads in this process, all instances (tests assert a cached run makes none)


def available_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class LlamaCpp(LM):
    """A GGUF model in this process. Nothing is loaded until a call needs the model.

    model: a registry name, a path, or a GGUF file name in a models directory (default: the
    embedded SmolLM2-135M). n_ctx: context size; default the model's trained context, capped at
    ``n_ctx_cap``. n_threads: default all cores. n_gpu_layers: layers to offload (-1: all) when
    llama-cpp-python was built with a GPU backend. chat_format: override the registry's (a
    llama-cpp-python format name such as "chatml", or a Jinja2 template string).
    """

    def __init__(self, model=None, *, n_ctx: int | None = None, n_ctx_cap: int = 8192,
                 n_threads: int | None = None, n_batch: int = 512, prefill_chunk: int | None = None,
                 n_gpu_layers: int = 0,
                 chat_format: str | None = None, cache_dir=None,
                 whitespace: str = COMPACT_WHITESPACE):
        self.ref = models.resolve(model)
        if n_ctx is not None and n_ctx < 16:
            raise ConfigError(f"n_ctx={n_ctx} is too small", "use at least a few hundred tokens")
        self.n_ctx_request, self.n_ctx_cap = n_ctx, n_ctx_cap
        self.n_threads = n_threads or available_threads()
        self.n_batch = n_batch
        prefill_chunk = prefill_chunk or min(64, n_batch)
        if not 1 <= prefill_chunk <= n_batch:
            raise ConfigError(f"prefill_chunk={prefill_chunk} must be in [1, n_batch={n_batch}]",
                              "use e.g. 64")
        self.prefill_chunk = prefill_chunk
        self.prompt_tokens_submitted = self.prompt_tokens_evaluated = 0  # KV reuse accounting
        self.eval_seconds = 0.0  # time inside llama.cpp's evaluation (prefill and decode)
        self.n_gpu_layers = n_gpu_layers
        self.chat_format = chat_format or self.ref.chat_format
        self.cache_dir = default_cache_dir(cache_dir)
        self.whitespace = whitespace
        self.indexes = IndexStore(self.cache_dir / "indexes")
        self._llama = None
        # one llama.cpp context does one thing at a time: calls from several threads (a served
        # agent answering while it retrains) take turns
        self._lock = threading.RLock()
        self._identity: dict | None = None
        self._render = None
        self._eos: int | None = None
        self._vocabulary = None
        self._guides: dict[str, object] = {}  # regex -> compiled Index, one per schema
        self._token_bytes: list[bytes] | None = None  # each token's bytes, built when needed
        self._piece_buf = (ctypes.c_char * 256)()
        self._closers: tuple[np.ndarray, np.ndarray] | None = None  # see _closing_pick
        self._penalizable: np.ndarray | None = None  # see _penalize
        self._aligned_end = 0  # KV positions [0, this) were evaluated as whole aligned chunks
        self.loads = 0

    # -- identity (cache keys): known without loading the model ------------------------------
    def identity(self) -> dict:
        if self._identity is None:  # computed once: hashing a user's file is not a per-call cost
            self._identity = {
                "backend": "llama.cpp", "model_sha256": models.model_sha256(self.ref, self.cache_dir),
                "chat_format": self.chat_format, "whitespace": self.whitespace,
                "n_batch": self.n_batch, "prefill_chunk": self.prefill_chunk}
        return self._identity

    def describe(self) -> str:
        return self.ref.name

    # -- loading ------------------------------------------------------------------------------
    @property
    def llama(self):
        """The llama_cpp.Llama, loaded on first use."""
        if self._llama is None:
            with self._lock:
                if self._llama is None:
                    self._load()
        return self._llama

    @property
    def n_ctx(self) -> int:
        return self.llama.n_ctx()

    def _load(self) -> None:
        global LOADS
        path = models.verified_path(self.ref, self.cache_dir)
        try:
            meta = read_metadata(path)
        except GGUFFormatError as err:
            raise ModelCorruptError(f"model file {path} is not a usable GGUF file: {err}",
                                    f"replace it with a valid GGUF file ({self.ref.install_hint()})")
        render = self._make_renderer(meta)
        n_ctx = self.n_ctx_request or min(context_length(meta) or 4096, self.n_ctx_cap)
        import llama_cpp

        logging.getLogger("llama-cpp-python").setLevel(logging.CRITICAL)
        start = time.perf_counter()
        try:
            llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=self.n_batch,
                                  n_ubatch=self.n_batch, n_threads=self.n_threads,
                                  n_threads_batch=self.n_threads, n_gpu_layers=self.n_gpu_layers,
                                  logits_all=False, verbose=False)
        except (ValueError, RuntimeError) as err:
            raise ModelCorruptError(f"llama.cpp could not load {path}: {err}",
                                    "check that the file is a complete GGUF model supported by "
                                    f"llama-cpp-python {llama_cpp.__version__}") from None
        log.info("loaded %s (n_ctx=%d, %d threads) in %.2fs", path.name, n_ctx, self.n_threads,
                 time.perf_counter() - start)
        self._llama, self._eos = llm, llm.token_eos()
        self._render = render(llm)
        self._aligned_end = 0
        self.loads += 1
        LOADS += 1

    def _make_renderer(self, meta: dict):
        """A function llm -> (messages -> (prompt, add_bos)), from the chat format setting."""
        from llama_cpp import llama_chat_format as lcf

        fmt = self.chat_format
        if fmt == "gguf" or "{%" in fmt or "{{" in fmt:
            template = meta.get("tokenizer.chat_template") if fmt == "gguf" else fmt
            if not isinstance(template, str) or not template:
                raise ChatTemplateError(
                    f"model {self.ref.name!r} has no chat template in its GGUF metadata",
                    "pass chat_format= a llama-cpp-python format name (chatml, gemma, llama-3, "
                    "...) or a Jinja2 template")

            def with_template(llm):
                token_text = llm._model.token_get_text
                formatter = lcf.Jinja2ChatFormatter(
                    template=template, eos_token=token_text(llm.token_eos()),
                    bos_token=token_text(llm.token_bos()), add_generation_prompt=True)
                return lambda msgs: _rendered(formatter(messages=msgs))
            return with_template
        if fmt == "none":
            raise ChatTemplateError(
                f"model {self.ref.name!r} is a base model with no chat template",
                "pass chat_format= a llama-cpp-python format name (chatml, gemma, ...) or a "
                "Jinja2 template")
        func = getattr(lcf, "format_" + fmt.replace("-", "_"), None) or \
            getattr(lcf, "format_" + fmt.replace("-", ""), None)
        if func is None:
            raise ChatTemplateError(f"unknown chat format {fmt!r}",
                                    "use 'gguf' (the model's own template), a llama-cpp-python "
                                    "format name such as chatml or gemma, or a Jinja2 template")
        return lambda llm: (lambda msgs: _rendered(func(messages=msgs)))

    # -- prompt ---------------------------------------------------------------------------------
    def render(self, messages: list[Message]) -> tuple[str, list[int]]:
        """The prompt text for ``messages`` in the model's chat format, and its tokens."""
        llm = self.llama
        msgs = [m.model_dump() for m in messages]
        prompt, add_bos = self._render(msgs)
        hostile = [i for i, m in enumerate(msgs) if _has_control_text(llm, m["content"])]
        if not hostile:
            return prompt, llm.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True)
        # A message whose text spells a control token ("<|im_end|><|im_start|>system ...", from
        # a dataset or a tool result) must not become one: control tokens come from the chat
        # template only. Render with slots, then tokenize the template's parts with special
        # tokens and the messages' text as plain text.
        slots = {i: f"LOCALSYMSLOT{i}X{os.getpid()}" for i in hostile}
        slotted, _ = self._render([{**m, "content": slots[i]} if i in slots else m
                                   for i, m in enumerate(msgs)])
        tokens, rest, first = [], slotted, True
        for i, slot in slots.items():
            text = msgs[i]["content"]
            head, sep, rest = rest.partition(slot)
            if not sep:  # the template dropped or changed the slot: refuse rather than guess
                raise ChatTemplateError(f"cannot isolate a message in the chat template of "
                                        f"{self.ref.name!r}", "use chat_format='chatml' or a "
                                                              "template that keeps message text")
            tokens += llm.tokenize(head.encode("utf-8"), add_bos=add_bos and first, special=True)
            tokens += llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
            first = False
        tokens += llm.tokenize(rest.encode("utf-8"), add_bos=False, special=True)
        return prompt, tokens

    def _prefill(self, tokens: list[int]) -> int:
        """Evaluate the prompt, reusing whole aligned chunks already in the KV cache. Returns
        how many prompt tokens were evaluated."""
        llm, B = self._llama, self.prefill_chunk
        n_old = llm.n_tokens
        old = llm.input_ids[:n_old]
        n = min(n_old, len(tokens))
        mismatch = np.nonzero(old[:n] != np.asarray(tokens[:n], dtype=old.dtype))[0]
        common = int(mismatch[0]) if len(mismatch) else n
        start = (min(common, len(tokens) - 1, self._aligned_end) // B) * B
        llm.n_tokens = start
        t0 = time.perf_counter()
        for s in range(start, len(tokens), B):  # one batch per aligned chunk, always the same
            llm.eval(tokens[s:s + B])
        self.eval_seconds += time.perf_counter() - t0
        self._aligned_end = (len(tokens) // B) * B
        self.prompt_tokens_submitted += len(tokens)
        self.prompt_tokens_evaluated += len(tokens) - start
        return len(tokens) - start

    # -- structured generation ------------------------------------------------------------------
    def _index_for(self, schema: type[BaseModel]):
        """The compiled outlines-core Index for a schema: from memory, from disk, or compiled."""
        from outlines_core.json_schema import build_regex_from_schema

        try:
            regex = build_regex_from_schema(canonical_json(schema_of(schema)), self.whitespace)
        except Exception as err:  # outlines-core raises its own ValueError subclasses
            raise ConfigError(f"schema {schema.__name__} cannot be compiled for decoding: {err}",
                              "simplify the schema (outlines-core supports most of JSON "
                              "schema, not every keyword)") from None
        index = self._guides.get(regex)
        if index is None:
            key = sha256_hex(canonical_json({
                "regex": regex, "model_sha256": self.identity()["model_sha256"],
                "eos": self._eos, "skip_attrs": _SKIP_ATTRS,
                "outlines_core": library_versions()["outlines-core"]}))
            index = self.indexes.load(key)
            if index is None:
                from outlines_core import Index

                index = Index(regex, self._vocab())
                self.indexes.save(key, index)
            self._guides[regex] = index
        return index

    def _vocab(self):
        """The outlines-core Vocabulary of the model: every token's bytes, control tokens left out
        (so no answer can contain <|im_start|> and the like)."""
        if self._vocabulary is None:
            import llama_cpp
            from outlines_core import Vocabulary

            vocab = self.llama._model.vocab
            pieces: dict[bytes, list[int]] = {}
            for tok, piece in enumerate(self._pieces()):
                if tok == self._eos or not piece or \
                        llama_cpp.llama_vocab_get_attr(vocab, tok) & _SKIP_ATTRS:
                    continue
                pieces.setdefault(piece, []).append(tok)
            self._vocabulary = Vocabulary(self._eos, pieces)
        return self._vocabulary

    def complete(self, messages: list[Message], schema: type[BaseModel],
                 params: SamplingParams) -> Completion:
        from outlines_core import Guide

        self.llama  # load before the index (the index key needs the eos token)
        with self._lock:
            guide = Guide(self._index_for(schema))
            return self._generate(messages, params, guide)

    def complete_text(self, messages, params: SamplingParams | None = None) -> Completion:
        """Free-text generation (for text a person reads, and for benchmarks): no schema."""
        from localsym.lm.base import as_messages

        with self._lock:
            return self._generate(as_messages(messages), params or SamplingParams(), None)

    def _generate(self, messages: list[Message], params: SamplingParams, guide) -> Completion:
        start = time.perf_counter()
        llm = self.llama
        prompt, tokens = self.render(messages)
        n_ctx = llm.n_ctx()
        if len(tokens) + params.max_tokens > n_ctx:
            raise ContextOverflowError(
                f"prompt of {len(tokens)} tokens plus an answer budget of {params.max_tokens} "
                f"tokens exceeds the context of {n_ctx} tokens ({self.ref.name})",
                "shorten the prompt, lower max_tokens, or raise n_ctx (up to the model's "
                "trained context)")
        evaluated = self._prefill(tokens)
        prefill_seconds = time.perf_counter() - start
        rng = np.random.default_rng(params.seed)
        out: list[int] = []
        budget, retries, closing = params.max_tokens, 0, False
        mask = np.zeros((llm.n_vocab() + 31) // 32, dtype=np.int32)
        while True:
            if guide is not None and guide.is_finished():
                break
            if len(out) >= budget or llm.n_tokens >= n_ctx:
                room = n_ctx - len(tokens)
                if budget < min(params.max_tokens_limit, room):
                    budget, retries = min(budget * 2, params.max_tokens_limit, room), retries + 1
                    continue  # greedy or seeded: going on equals re-running with the larger budget
                if params.on_limit == "close" and guide is not None and not closing \
                        and room - len(out) > CLOSING_ALLOWANCE:
                    closing, budget = True, len(out) + CLOSING_ALLOWANCE
                    continue
                if llm.n_tokens >= n_ctx or budget >= room:  # the context ran out, not the budget
                    raise ContextOverflowError(
                        f"the answer reached the end of the {n_ctx}-token context after "
                        f"{len(out)} tokens (prompt {len(tokens)} tokens, {self.ref.name})",
                        "shorten the prompt, ask for a shorter answer, or raise n_ctx")
                raise TruncatedOutputError(
                    f"the answer was cut off after {len(out)} tokens (budget {params.max_tokens}, "
                    f"doubled {retries} times up to max_tokens_limit={params.max_tokens_limit}, "
                    f"context {n_ctx}, prompt {len(tokens)} tokens); it starts "
                    f"{self._text(out[:30])!r} and ends {self._text(out[-30:])!r}",
                    "raise max_tokens_limit, ask for a shorter answer (fewer or shorter fields), "
                    "or use a larger n_ctx")
            logits = np.ctypeslib.as_array(
                llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),))
            if params.repeat_penalty > 1.0 and out:
                logits = self._penalize(logits, out[-params.repeat_window:], params.repeat_penalty)
            token = self._closing_pick(logits, guide, mask) if closing else \
                self._pick(logits, guide, params, rng, mask)
            if token == self._eos:
                break
            if guide is not None:
                guide.advance(token_id=token, return_tokens=False)
            out.append(token)
            t0 = time.perf_counter()
            llm.eval([token])
            self.eval_seconds += time.perf_counter() - t0
        text = self._text(out)
        return Completion(text=text, prompt=prompt, prompt_tokens=len(tokens),
                          prompt_tokens_evaluated=evaluated, completion_tokens=len(out),
                          retries=retries, closed_early=closing,
                          seconds=time.perf_counter() - start,
                          prefill_seconds=prefill_seconds)

    def logprob(self, messages, text: str) -> tuple[float, int]:
        """Log-probability of ``text`` as the answer to ``messages``, from the logits."""
        with self._lock:
            return self._logprob(messages, text)

    def _logprob(self, messages, text: str) -> tuple[float, int]:
        from localsym.lm.base import as_messages

        llm = self.llama
        _, tokens = self.render(as_messages(messages))
        target = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        if len(tokens) + len(target) > llm.n_ctx():
            raise ContextOverflowError(
                f"prompt of {len(tokens)} tokens plus a {len(target)}-token answer exceeds the "
                f"context of {llm.n_ctx()} tokens", "shorten the prompt or raise n_ctx")
        self._prefill(tokens)
        total = 0.0
        for token in target:
            logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1),
                                           shape=(llm.n_vocab(),)).astype(np.float64)
            top = logits.max()
            total += float(logits[token] - top - np.log(np.exp(logits - top).sum()))
            llm.eval([token])
        return total, len(target)

    def _allowed(self, guide, mask: np.ndarray, size: int) -> np.ndarray:
        guide.write_mask_into(mask.ctypes.data, mask.size, mask.itemsize)
        return np.unpackbits(mask.view(np.uint8), bitorder="little")[:size].astype(bool)

    def _piece(self, token: int) -> bytes:
        """One token's bytes (a control token's are empty). llama-cpp-python's detokenize reads
        pieces through a 32-byte buffer and garbles longer tokens; SmolLM2 has some of 81 bytes."""
        import llama_cpp

        vocab, buf = self.llama._model.vocab, self._piece_buf
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
        if n < 0:  # the buffer is too small: -n bytes are needed
            buf = (ctypes.c_char * -n)()
            n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
        return bytes(buf[:n])

    def _pieces(self) -> list[bytes]:
        """Every token's bytes, built once when first needed (80 ms for 49k tokens)."""
        if self._token_bytes is None:
            self._token_bytes = [self._piece(t) for t in range(self.llama.n_vocab())]
        return self._token_bytes

    def _text(self, tokens: list[int]) -> str:
        return b"".join(map(self._piece, tokens)).decode("utf-8", errors="replace")

    def _penalize(self, logits: np.ndarray, recent: list[int], penalty: float) -> np.ndarray:
        """llama.cpp's repetition penalty over the recent answer tokens, JSON punctuation exempt
        (penalizing a closing quote would only make strings longer)."""
        if self._penalizable is None:
            self._penalizable = np.array([p.strip() != b"" and not any(c in p for c in b'"{}[],:')
                                          for p in self._pieces()])
        ids = np.unique(np.asarray(recent))
        ids = ids[self._penalizable[ids]]
        if not ids.size:
            return logits
        out = logits.copy()
        vals = out[ids]
        out[ids] = np.where(vals > 0, vals / penalty, vals * penalty)
        return out

    def _closing_pick(self, logits: np.ndarray, guide, mask: np.ndarray) -> int:
        """Past the limit (on_limit="close"): finish the JSON in few tokens. Prefer, in turn, the
        likeliest allowed token that has a quote (ends an open string), one that has a closing
        bracket or brace (ends a list or object), then any allowed token; never one that would
        start more content (an opening bracket or brace, a comma, a colon, an escape)."""
        if self._closers is None:
            pieces = self._pieces()
            starts_more = [any(c in p for c in b"[{,:\\") for p in pieces]
            self._closers = (
                np.array([b'"' in p and not m for p, m in zip(pieces, starts_more)]),
                np.array([(b"]" in p or b"}" in p) and not m for p, m in zip(pieces, starts_more)]))
        allowed = self._allowed(guide, mask, logits.size)
        for tier in self._closers:
            if (allowed & tier).any():
                allowed = allowed & tier
                break
        return int(np.argmax(np.where(allowed, logits, -np.inf)))

    def _pick(self, logits: np.ndarray, guide, params: SamplingParams,
              rng: np.random.Generator, mask: np.ndarray) -> int:
        if params.temperature == 0.0:
            token = int(np.argmax(logits))
            if guide is None or guide.accepts_tokens([token]):
                return token  # the raw argmax is allowed, so it is also the masked argmax
        x = logits.astype(np.float64)
        if guide is not None:
            x[~self._allowed(guide, mask, x.size)] = -np.inf
        if params.temperature == 0.0:
            return int(np.argmax(x))
        x /= params.temperature
        order = np.argsort(-x, kind="stable")
        if params.top_k:
            order = order[: params.top_k]
        probs = np.exp(x[order] - x[order[0]])
        probs /= probs.sum()
        if params.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(probs), params.top_p)) + 1
            order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
        return int(order[min(int(np.searchsorted(np.cumsum(probs), rng.random())),
                             len(order) - 1)])

    def close(self) -> None:
        if self._llama is not None:
            self._llama.close()
            self._llama = None


def _rendered(response) -> tuple[str, bool]:
    """(prompt, add_bos) from a llama-cpp-python ChatFormatterResponse."""
    return response.prompt, not getattr(response, "added_special", False)


def _has_control_text(llm, text: str) -> bool:
    """Whether ``text`` spells one of the model's special tokens (it tokenizes differently with
    special-token parsing on)."""
    if "<" not in text and "[" not in text and "|" not in text:
        return False  # every chat-format control token in use has one of these
    data = text.encode("utf-8")
    return llm.tokenize(data, add_bos=False, special=True) != \
        llm.tokenize(data, add_bos=False, special=False)
