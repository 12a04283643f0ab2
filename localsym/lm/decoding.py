"""Decoding helpers of the in-process backend: each token's bytes (``TokenBytes``), the state of
one call being decoded (``SeqState``), and how the next token is chosen under a schema
(``TokenChooser``: greedy or seeded sampling over the tokens the outlines-core guide allows, a
repetition penalty that spares JSON punctuation, and the closing mode that finishes a JSON answer
in few tokens). The backend supplies the logits and the guide."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from localsym.lm.base import SamplingParams


class TokenBytes:
    """Each token's bytes, read from a llama.cpp model's vocabulary (a control token's are
    empty). llama-cpp-python's detokenize reads pieces through a 32-byte buffer and garbles
    longer tokens; SmolLM2 has some of 81 bytes."""

    def __init__(self, model):  # llama-cpp-python's LlamaModel
        self._model = model
        self._buf = (ctypes.c_char * 256)()
        self._all: list[bytes] | None = None

    def piece(self, token: int) -> bytes:
        import llama_cpp  # noqa: PLC0415 (the llama.cpp library loads only when a model does)

        vocab, buf = self._model.vocab, self._buf
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
        if n < 0:  # the buffer is too small: -n bytes are needed
            buf = (ctypes.c_char * -n)()
            n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
        return bytes(buf[:n])

    def pieces(self) -> list[bytes]:
        """Every token's bytes, built once when first needed (80 ms for 49k tokens)."""
        if self._all is None:
            self._all = [self.piece(t) for t in range(self._model.n_vocab())]
        return self._all

    def text(self, tokens: list[int]) -> str:
        return b"".join(map(self.piece, tokens)).decode("utf-8", errors="replace")


@dataclass
class SeqState:
    """One call being decoded: its prompt, its stream, its answer so far and its own sampler."""

    i: int
    guide: object
    params: SamplingParams
    prompt: str
    tokens: list[int]
    slot: object
    logits: np.ndarray
    budget: int
    rng: np.random.Generator
    mask: np.ndarray
    evaluated: int
    start: float
    prefill_seconds: float
    out: list[int] = field(default_factory=list)
    retries: int = 0
    closing: bool = False
    index: object = None  # the guide's compiled index (to find the text it forces)
    counter: Any = None  # bounded.StringCounter: the bounds the index leaves to the decoder


class TokenChooser:
    """The token choice of one vocabulary; ``pieces`` gives every token's bytes (read once,
    when a rule first needs them)."""

    def __init__(self, pieces: Callable[[], list[bytes]]):
        self._pieces = pieces
        self._closers: tuple[np.ndarray, np.ndarray] | None = None  # see closing_pick
        self._penalizable: np.ndarray | None = None  # see penalize

    @staticmethod
    def allowed(guide, mask: np.ndarray, size: int) -> np.ndarray:
        """The tokens the guide allows now, as a bool array over the vocabulary."""
        guide.write_mask_into(mask.ctypes.data, mask.size, mask.itemsize)
        return np.unpackbits(mask.view(np.uint8), bitorder="little")[:size].astype(bool)

    def penalize(self, logits: np.ndarray, recent: list[int], penalty: float) -> np.ndarray:
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

    def closing_pick(self, logits: np.ndarray, guide, mask: np.ndarray,
                     limit: np.ndarray | None = None) -> int:
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
        allowed = self.allowed(guide, mask, logits.size)
        if limit is not None:
            allowed &= limit
        for tier in self._closers:
            if (allowed & tier).any():
                allowed = allowed & tier
                break
        return int(np.argmax(np.where(allowed, logits, -np.inf)))

    def pick(self, logits: np.ndarray, guide, params: SamplingParams,
             rng: np.random.Generator, mask: np.ndarray, limit: np.ndarray | None = None) -> int:
        """The next token under ``guide`` and ``limit`` (the tokens a string's counted bound
        allows, ``bounded``; None: no limit)."""
        if params.temperature == 0.0:
            token = int(np.argmax(logits))
            if guide is None or (guide.accepts_tokens([token]) and
                                 (limit is None or limit[token])):
                return token  # the raw argmax is allowed, so it is also the masked argmax
        x = logits.astype(np.float64)
        if guide is not None:
            allowed = self.allowed(guide, mask, x.size)
            if limit is not None:
                allowed &= limit
            x[~allowed] = -np.inf
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


class ForcedText:
    """Text a schema leaves no choice about (a key, a brace, the rest of an enum value, a
    string's closing quote), found from an outlines-core ``Index`` state and given as the
    tokens to append in one evaluation instead of decoding them one by one.

    The text is walked byte by byte over the single-byte tokens while every token the index
    allows starts with the same byte (and the answer may not end there), then tokenized the
    model's own way (``tokenize``: its canonical tokens), so an answer is the same whatever
    came before it. Results are kept per state in the table ``table_for(index)`` gives (the
    index store keeps one with each index it holds; None: not kept), never under ``id(index)``,
    which a new index reuses once an old one is freed.
    """

    MAX_BYTES = 256

    def __init__(self, pieces: Callable[[], list[bytes]], tokenize: Callable[[bytes], list[int]],
                 eos: int, table_for: Callable[[Any], dict | None] = lambda index: None):
        self._pieces, self._tokenize, self._eos = pieces, tokenize, eos
        self._byte_token: Any = None  # dict[int, int], made on first use
        self._first: Any = None  # np.ndarray, made on first use
        self._table_for = table_for

    def _tables(self) -> None:
        pieces = self._pieces()
        self._byte_token = {}
        for tok, p in enumerate(pieces):
            if len(p) == 1 and p[0] not in self._byte_token:
                self._byte_token[p[0]] = tok
        self._first = np.array([p[0] if p else 256 for p in pieces], dtype=np.int16)

    def _forced_byte(self, index, state: int) -> int | None:
        allowed = np.asarray(index.get_allowed_tokens(state), dtype=np.int64)
        if not allowed.size or self._eos in allowed or index.is_final_state(state):
            return None
        firsts = self._first[allowed[allowed < self._first.size]]
        return int(firsts[0]) if firsts.size and (firsts == firsts[0]).all() and \
            firsts[0] < 256 else None

    def tokens(self, index, state: int, lead: bytes = b"") -> tuple[list[int], int]:
        """The tokens of the forced text at ``state`` (empty if the next token is a choice)
        and the state after them. ``lead``: bytes forced before what the index forces (a
        string's closing quote at a bound the decoder counts, ``bounded``)."""
        key = (state, lead) if lead else state
        known = self._table_for(index)
        if known is not None and key in known:
            return known[key]
        if self._byte_token is None:
            self._tables()
        text, s = b"", state
        for lead_byte in lead:
            step = self._byte_token.get(lead_byte)
            after = index.get_next_state(s, step) if step is not None else None
            if after is None:
                return [], state
            text, s = text + bytes([lead_byte]), after
        while len(text) < self.MAX_BYTES:
            b = self._forced_byte(index, s)
            token = self._byte_token.get(b) if b is not None else None
            nxt = index.get_next_state(s, token) if token is not None else None
            if nxt is None or b is None:
                break
            text, s = text + bytes([b]), nxt
        while text:  # whole UTF-8 characters only
            try:
                text.decode("utf-8")
                break
            except UnicodeDecodeError:
                text = text[:-1]
        out: tuple[list[int], int] = ([], state)
        if text:
            tokens, s = self._tokenize(text), state
            for t in tokens:  # the model's tokens for it must be a path of the index
                s = index.get_next_state(s, t) if s is not None else None
            if s is not None:
                out = (tokens, s)
        if known is not None:
            known[key] = out
        return out
