"""The decoding loop of the in-process backend: many calls decoded together, one KV stream each
(``streams.Streams``), every answer under its schema's guide.

``_decode`` admits waiting calls while a stream is free, then picks one token for every running
call and evaluates them in one batch. Under decoding v2 (``LlamaCpp(decoding=...)``) a call's
prompt is cut at its messages (``ChatRenderer.render_segments``), and wherever the schema leaves
no choice (``decoding.ForcedText``: a key, a brace, the rest of an enum value) the forced text is
appended in one evaluation of that call's own, at the start of the answer within its prompt's
evaluation. Everything a call's answer depends on is a function of the call alone: its own
stream, its own chunking, its own forced runs; the decode steps shared with other calls give
bit-identical logits (``streams``).
"""

from __future__ import annotations

import time
from typing import Any
from collections import deque

import numpy as np

from localsym.errors import CallFailure, ContextOverflowError, TruncatedOutputError
from localsym.lm.base import Completion, Message, SamplingParams
from localsym.lm.decoding import SeqState
from localsym.lm.streams import chunk_starts

CLOSING_ALLOWANCE = 64  # tokens allowed to close the JSON after max_tokens_limit (on_limit=close)


class DecodingLoop:
    """The decoding loop of ``LlamaCpp`` (which supplies the streams, the renderer, the token
    chooser, the forced-text finder and the model's tokens)."""

    def _decode(self, jobs: list[tuple], on_done=None) -> list[Completion | Exception]:
        """Run ``jobs`` (messages, guide or None, params): admit waiting calls while a stream is
        free, then pick one token for every running call and evaluate them in one batch."""
        streams = self._streams
        results: list[Any] = [None] * len(jobs)
        waiting = deque(range(len(jobs)))
        running: list[Any] = []

        def finish(i: int, result) -> None:
            results[i] = result
            if on_done is not None:
                on_done(i, result)
        try:
            while waiting or running:
                while waiting and streams.free():
                    i = waiting.popleft()
                    try:
                        running.append(self._begin(i, *jobs[i]))
                    except CallFailure as err:
                        finish(i, err)
                step = []
                for seq in list(running):
                    token: int | None | CallFailure
                    try:
                        token = self._advance(seq)
                    except CallFailure as err:
                        token = err
                    if isinstance(token, int):
                        step.append((seq, token))
                        continue
                    if isinstance(token, list):  # a token and the text the schema forces after
                        if not seq.guide.is_finished():
                            seq.logits = streams.extend(seq.slot, token, len(seq.tokens) +
                                                        len(seq.out) - len(token))
                        continue
                    running.remove(seq)
                    streams.release(seq.slot)
                    finish(seq.i, token or self._completion(seq))
                if step:
                    rows = streams.step([(seq.slot, token, len(seq.tokens) + len(seq.out) - 1)
                                         for seq, token in step])
                    for (seq, _), row in zip(step, rows):
                        seq.logits = row
        except BaseException:
            for seq in running:  # their streams hold half an answer: start them afresh next time
                streams.forget(seq.slot)
            raise
        return results

    def _begin(self, i: int, messages: list[Message], guide, params: SamplingParams,
               index=None, counter=None) -> SeqState:
        """Render the call, check it fits, and evaluate its prompt in a free stream (in v2, with
        the text the schema forces at the start of the answer)."""
        start = time.perf_counter()
        forced: list[int] = []
        if self.decoding == "v1":
            prompt, tokens = self.render(messages)
            chunks = None
        else:
            self.load()  # the segments' tokens need the model's vocabulary
            prompt, tokens, segments = self._render.render_segments(messages)
            if guide is not None:  # the forced text counts against the budget like any token
                forced = self._forced.tokens(index, guide.get_state())[0][:params.max_tokens]
                for t in forced:
                    guide.advance(token_id=t, return_tokens=False)
                    if counter is not None:
                        counter.feed(self.tokens.pieces()[t])
            chunks = chunk_starts(len(tokens) + len(forced), self.prefill_chunk,
                                  segments + ([len(tokens)] if forced else []))
        n_ctx = self._streams.n_ctx
        if len(tokens) + params.max_tokens > n_ctx:
            raise ContextOverflowError(
                f"prompt of {len(tokens)} tokens plus an answer budget of {params.max_tokens} "
                f"tokens exceeds the context of {n_ctx} tokens ({self.ref.name})",
                "shorten the prompt, lower max_tokens, or raise n_ctx (up to the model's "
                "trained context)")
        slot, begin = self._streams.acquire(tokens + forced, chunks)
        try:
            logits = self._streams.prefill(slot, tokens + forced, begin, chunks, len(tokens))
        except BaseException:
            self._streams.forget(slot)
            raise
        return SeqState(i=i, guide=guide, params=params, prompt=prompt, tokens=tokens, slot=slot,
                        logits=logits, budget=params.max_tokens,
                        rng=np.random.default_rng(params.seed),
                        mask=np.zeros((len(logits) + 31) // 32, dtype=np.int32),
                        evaluated=len(tokens) - min(begin, len(tokens)), start=start,
                        prefill_seconds=time.perf_counter() - start, out=list(forced),
                        index=index, counter=counter)

    def _advance(self, seq: SeqState) -> int | None:
        """The call's next token, or None when its answer is complete. Raises when the answer
        runs out of budget or context."""
        params, guide, out, n_ctx = seq.params, seq.guide, seq.out, self._streams.n_ctx
        if guide is not None and guide.is_finished():
            return None
        while len(out) >= seq.budget or len(seq.tokens) + len(out) >= n_ctx:
            room = n_ctx - len(seq.tokens)
            if seq.budget < min(params.max_tokens_limit, room):
                # greedy or seeded: going on equals re-running with the larger budget
                seq.budget, seq.retries = min(seq.budget * 2, params.max_tokens_limit, room), \
                    seq.retries + 1
                continue
            if params.on_limit == "close" and guide is not None and not seq.closing \
                    and room - len(out) > CLOSING_ALLOWANCE:
                seq.closing, seq.budget = True, len(out) + CLOSING_ALLOWANCE
                continue
            if len(seq.tokens) + len(out) >= n_ctx or seq.budget >= room:
                raise ContextOverflowError(  # the context ran out, not the budget
                    f"the answer reached the end of the {n_ctx}-token context after "
                    f"{len(out)} tokens (prompt {len(seq.tokens)} tokens, {self.ref.name})",
                    "shorten the prompt, ask for a shorter answer, or raise n_ctx")
            raise TruncatedOutputError(
                f"the answer was cut off after {len(out)} tokens (budget {params.max_tokens}, "
                f"doubled {seq.retries} times up to max_tokens_limit={params.max_tokens_limit}, "
                f"context {n_ctx}, prompt {len(seq.tokens)} tokens); it starts "
                f"{self.tokens.text(out[:30])!r} and ends {self.tokens.text(out[-30:])!r}",
                "raise max_tokens_limit, ask for a shorter answer (fewer or shorter fields), "
                "or use a larger n_ctx")
        logits = seq.logits
        if params.repeat_penalty > 1.0 and out:
            logits = self._chooser.penalize(logits, out[-params.repeat_window:],
                                            params.repeat_penalty)
        counter = seq.counter
        limit = counter.limit() if counter is not None else None
        token = self._chooser.closing_pick(logits, guide, seq.mask, limit) if seq.closing else \
            self._chooser.pick(logits, guide, params, seq.rng, seq.mask, limit)
        if token == self._eos:
            return None
        if guide is not None:
            guide.advance(token_id=token, return_tokens=False)
        out.append(token)
        if counter is not None:
            counter.feed(self.tokens.pieces()[token])
        if self.decoding == "v2" and guide is not None and not seq.closing:
            # a string at its counted bound closes as the unrolled index would force it to
            lead = b'"' if counter is not None and counter.at_bound() else b""
            forced = self._forced.tokens(seq.index, guide.get_state(), lead)[0][
                :max(0, seq.budget - len(out))]
            if forced:
                for t in forced:
                    guide.advance(token_id=t, return_tokens=False)
                    if counter is not None:
                        counter.feed(self.tokens.pieces()[t])
                out.extend(forced)
                return [token] + forced
        return token

    def _completion(self, seq: SeqState) -> Completion:
        return Completion(text=self.tokens.text(seq.out), prompt=seq.prompt,
                          prompt_tokens=len(seq.tokens), prompt_tokens_evaluated=seq.evaluated,
                          completion_tokens=len(seq.out), retries=seq.retries,
                          closed_early=seq.closing, seconds=time.perf_counter() - seq.start,
                          prefill_seconds=seq.prefill_seconds)

