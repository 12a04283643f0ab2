"""The one primitive everything stands on: chat messages + a pydantic schema + sampling params →
a validated pydantic object.

``LM.complete`` is what a backend implements (and what the disk cache wraps): it returns the raw
JSON text of the answer with its accounting, already validated against the schema.
``LM.generate`` is what callers use: it returns the pydantic object.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Literal, NamedTuple, Sequence, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from localsym.errors import CallFailure, ConfigError, InvalidOutputError

T = TypeVar("T", bound=BaseModel)


class Message(BaseModel):
    """One chat message."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


class SamplingParams(BaseModel):
    """How to pick tokens. Greedy by default; ``seed`` is explicit per call, so a sampled answer
    depends on the call alone, never on the calls made before it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    temperature: float = Field(0.0, ge=0.0, le=5.0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, description="0 = no top-k cut")
    seed: int = Field(0, ge=0, lt=2**63)
    max_tokens: int = Field(256, ge=1, description="token budget of the first try")
    max_tokens_limit: int = Field(
        1024, ge=1, description="a truncated answer is retried with a doubled budget up to this")
    repeat_penalty: float = Field(
        1.0, ge=1.0, le=3.0, description="divide the logit of a word token seen in the last "
        "repeat_window answer tokens by this (JSON punctuation is exempt); 1 = off. Keeps a "
        "small model from looping inside a string")
    repeat_window: int = Field(64, ge=1)
    on_limit: Literal["error", "close"] = Field(
        "error", description="at max_tokens_limit: raise TruncatedOutputError, or close the JSON "
        "as fast as the schema allows (strings and lists cut short) and mark the answer closed")

    @model_validator(mode="after")
    def _limit_covers_budget(self):
        if self.max_tokens_limit < self.max_tokens:
            raise ValueError(f"max_tokens_limit ({self.max_tokens_limit}) is below max_tokens "
                             f"({self.max_tokens})")
        return self


# An agent's node calls when nothing says otherwise: a config's ``sampling``, a ``Pipeline``
# built without params, ``localsym run`` and ``localsym eval``. One home, so an evaluation
# samples as the training did.
AGENT_PARAMS = SamplingParams(max_tokens=128, max_tokens_limit=256)
# Sampling of every meta call (judge, gradients, optimizers): greedy, and an answer that runs past
# the limit is closed (strings cut short) rather than lost, since a small model can loop in a
# string.
# The repetition penalty (word tokens only) stops most such loops before the limit is reached.
META_PARAMS = SamplingParams(max_tokens=192, max_tokens_limit=384, on_limit="close",
                             repeat_penalty=1.3)


class Usage(BaseModel):
    """An LM's counters so far (``LM.usage()``): calls served from the cache and made, tokens
    made, model loads, evaluation seconds, prompt tokens submitted and evaluated; a backend's
    own counters beside them."""

    model_config = ConfigDict(extra="allow")

    hits: int = 0
    misses: int = 0
    tokens_made: int = 0
    model_loads: int = 0
    eval_seconds: float = 0.0
    prompt_tokens_submitted: int = 0
    prompt_tokens_evaluated: int = 0


class Completion(BaseModel):
    """The raw answer of one call and its accounting. ``text`` is JSON valid under the schema."""

    text: str
    prompt: str = Field("", description="the rendered prompt, for people reading a trace")
    prompt_tokens: int = 0
    prompt_tokens_evaluated: int = Field(0, description="prompt tokens not reused from KV cache")
    completion_tokens: int = 0
    retries: int = Field(0, description="times the token budget was doubled")
    closed_early: bool = Field(False, description="cut short at max_tokens_limit (on_limit=close)")
    seconds: float = 0.0
    prefill_seconds: float = Field(
        0.0, description="of seconds, rendering and evaluating the prompt")
    cached: bool = False


Messages = str | Sequence[Message | dict]


def as_messages(messages: Messages) -> list[Message]:
    """Accept a bare string (one user message), Message objects or plain dicts."""
    if isinstance(messages, str):
        return [Message(role="user", content=messages)]
    try:
        out = [m if isinstance(m, Message) else Message.model_validate(m) for m in messages]
    except ValidationError as err:
        raise ConfigError(f"bad chat message: {err.errors()[0]['msg']}",
                          "give messages as {'role': 'system'|'user'|'assistant', 'content': str}")
    if not out:
        raise ConfigError("no messages to send", "give at least one message")
    return out


def schema_of(schema: type[BaseModel]) -> dict:
    """The JSON schema of a pydantic model, as used for decoding and for cache keys (computed
    once per class; treat it as read-only)."""
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise ConfigError(f"output schema must be a pydantic model class, got {schema!r}",
                          "define a class that inherits pydantic.BaseModel")
    return _json_schema(schema)


@lru_cache(maxsize=512)
def _json_schema(schema: type[BaseModel]) -> dict:
    return schema.model_json_schema()


def validate_output(schema: type[T], text: str) -> T:
    """Parse ``text`` under ``schema``; anything else is an InvalidOutputError, never passed on."""
    try:
        return schema.model_validate_json(text)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise InvalidOutputError(
            f"model output does not match schema {schema.__name__}: {where}: {first['msg']} "
            f"(output starts {text[:80]!r})",
            "this is a bug if it came from constrained decoding; report it with the output",
            text=text) from None


class Call(NamedTuple):
    """One call of a batch: what ``LM.complete`` takes."""

    messages: list[Message]
    schema: type[BaseModel]
    params: SamplingParams


def unwrap(result):
    """A batch result as a single call gives it: the answer, or its failure raised."""
    if isinstance(result, Exception):
        raise result
    return result


def with_overrides(params: SamplingParams | None, overrides: dict) -> SamplingParams:
    params = params or SamplingParams()
    if not overrides:
        return params
    try:
        return SamplingParams.model_validate({**params.model_dump(), **overrides})
    except ValidationError as err:
        raise ConfigError(f"bad sampling params: {err.errors()[0]['msg']}",
                          f"valid names: {', '.join(SamplingParams.model_fields)}") from None


class LM(ABC):
    """A language model that answers chat messages with an object of a given pydantic schema."""

    max_concurrency: int = 1  # calls the default complete_batch runs at once (an endpoint's slots)
    batch_hint: int = 0  # calls worth sending at once (the streams decoded together; 0: any)
    local: bool = False  # runs in this process: its speed can be measured here (budget estimate)

    def load(self) -> None:
        """Load what the first call would need (a model file), e.g. to leave it out of a timing."""

    def usage(self) -> dict[str, float]:
        """Counters of this LM's work so far (calls, tokens, seconds); those it keeps."""
        return {}

    @abstractmethod
    def identity(self) -> dict:
        """Everything about this LM that can change an answer (model file hash, chat format...):
        part of every cache key. JSON-serializable, and known without loading the model."""

    def describe(self) -> str:
        """A short human name for messages (a model name, an endpoint)."""
        return type(self).__name__

    @abstractmethod
    def complete(self, messages: list[Message], schema: type[BaseModel],
                 params: SamplingParams) -> Completion:
        """Answer ``messages`` with JSON text valid under ``schema``."""

    def generate(self, messages: Messages, schema: type[T], params: SamplingParams | None = None,
                 **overrides) -> T:
        """Answer with a validated ``schema`` object. ``overrides`` set sampling params by name,
        e.g. ``lm.generate(msgs, Answer, max_tokens=64, seed=3)``."""
        return self.call(messages, schema, params, **overrides)[0]

    def call(self, messages: Messages, schema: type[T], params: SamplingParams | None = None,
             **overrides) -> tuple[T, Completion]:
        """Like ``generate``, and also return the Completion (prompt, token counts, cache hit)."""
        params = with_overrides(params, overrides)
        schema_of(schema)
        completion = self.complete(as_messages(messages), schema, params)
        return validate_output(schema, completion.text), completion

    def complete_batch(self, calls: Sequence[Call], on_done=None) -> list[Completion | Exception]:
        """Answer many independent calls; results in the order of ``calls``. A call that fails
        on its own (``CallFailure``: too long, cut off, invalid) gets its exception as its
        result; any other error stops the batch. ``on_done(i, result)`` is called as each call
        finishes (the disk cache stores it then). Every result equals what ``complete`` gives
        the call alone.

        This default runs the calls one after another, or ``max_concurrency`` at a time on a
        backend that has parallel slots (an HTTP server); the llama.cpp backend decodes them
        together in one batch."""
        def one(i: int) -> Completion | Exception:
            result: Completion | Exception
            try:
                result = self.complete(*calls[i])
            except CallFailure as err:
                result = err
            if on_done is not None:
                on_done(i, result)
            return result

        workers = int(self.max_concurrency)
        if workers <= 1 or len(calls) <= 1:
            return [one(i) for i in range(len(calls))]
        with ThreadPoolExecutor(min(workers, len(calls)), thread_name_prefix="localsym") as pool:
            return list(pool.map(one, range(len(calls))))

    def call_batch(self, calls: Sequence[tuple], **overrides) -> list[tuple[BaseModel, Completion]
                                                                       | Exception]:
        """``call`` over many ``(messages, schema, params)`` at once (see ``complete_batch``):
        each result is ``(value, completion)`` or the call's own failure."""
        if isinstance(calls, (str, bytes)) or not isinstance(calls, Sequence) or \
                not all(isinstance(c, tuple) and len(c) == 3 for c in calls):
            raise ConfigError(f"call_batch takes a list of (messages, schema, params) tuples, not "
                              f"{type(calls).__name__}", "pass e.g. [(messages, Schema, None)]")
        batch = []
        for messages, schema, params in calls:
            schema_of(schema)
            batch.append(Call(as_messages(messages), schema, with_overrides(params, overrides)))
        out: list[tuple[BaseModel, Completion] | Exception] = []
        for call, result in zip(batch, self.complete_batch(batch)):
            if isinstance(result, Exception):
                out.append(result)
                continue
            try:
                out.append((validate_output(call.schema, result.text), result))
            except InvalidOutputError as err:
                out.append(err)
        return out

    def logprob(self, messages: Messages, text: str) -> tuple[float, int]:
        """Log-probability (nats) of ``text`` as the answer to ``messages``, and its token count.
        Only backends that expose logits have it (a local model does; most APIs do not)."""
        raise NotImplementedError(f"{self.describe()} does not expose log-probabilities")

    def close(self) -> None:
        """Release what the LM holds (model memory, cache handles)."""
