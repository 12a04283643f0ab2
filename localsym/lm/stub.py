"""A stand-in LM with no model: it fills any output schema with values derived from a hash of
the call, so the same call always gets the same answer.

For exercising everything around the model fast (checkpoints, the cache, resume, the CLI, fault
injection) with ``models: {agent: stub}``; its answers mean nothing. It still goes through the
disk cache and the schema validation like every other backend.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import deque

from pydantic import BaseModel

from localsym.errors import InvalidOutputError
from localsym.lm.base import LM, Completion, Message, SamplingParams, as_messages
from localsym.lm.store import canonical_json

WORDS = ("yes", "no", "count", "the", "answer", "is", "step", "check", "list", "each", "item",
         "number", "one", "two", "three", "4", "7", "12", "first", "then", "output")


class StubLM(LM):
    name = "stub"

    def identity(self) -> dict:
        return {"backend": "stub", "version": 1}

    def describe(self) -> str:
        return "stub (no model; hashed answers)"

    def complete(self, messages: list[Message], schema: type[BaseModel],
                 params: SamplingParams) -> Completion:
        json_schema = schema.model_json_schema()
        seed = canonical_json({"m": [m.model_dump() for m in self._answers_to(messages)],
                               "s": json_schema, "seed": params.seed})
        value = _Filler(seed, json_schema.get("$defs", {})).fill(json_schema, "")
        text = json.dumps(value)
        return Completion(text=text, completion_tokens=len(text) // 4)

    def _answers_to(self, messages: list[Message]) -> list[Message]:
        """The messages an answer is drawn from (all of them)."""
        return messages

    def logprob(self, messages, text: str) -> tuple[float, int]:
        msgs = [m.model_dump() for m in as_messages(messages)]
        h = int(hashlib.sha256(canonical_json([msgs, text]).encode()).hexdigest()[:8], 16)
        return -(h % 1000) / 100.0, max(1, len(text) // 4)


class _Filler:
    def __init__(self, seed: str, defs: dict):
        self.seed, self.defs = seed, defs

    def _n(self, path: str) -> int:
        return int(hashlib.sha256(f"{self.seed}|{path}".encode()).hexdigest()[:12], 16)

    def fill(self, s: dict, path: str):
        if "$ref" in s:
            return self.fill(self.defs[s["$ref"].rsplit("/", 1)[-1]], path)
        if "const" in s:
            return s["const"]
        if "enum" in s:
            return s["enum"][self._n(path) % len(s["enum"])]
        for key in ("anyOf", "oneOf"):
            if key in s:
                options = [o for o in s[key] if o.get("type") != "null"] or s[key]
                return self.fill(options[self._n(path + key) % len(options)], path)
        if "allOf" in s:
            return self.fill(s["allOf"][0], path)
        kind = s.get("type", "string")
        n = self._n(path)
        if kind == "object":
            props = s.get("properties", {})
            return {k: self.fill(v, f"{path}.{k}") for k, v in props.items()
                    if k in s.get("required", []) or n % 2}
        if kind == "array":
            lo = s.get("minItems", 0)
            hi = min(s.get("maxItems", lo + 2), lo + 2)
            return [self.fill(s.get("items", {}), f"{path}[{i}]")
                    for i in range(lo + n % (hi - lo + 1))]
        if kind == "boolean":
            return bool(n % 2)
        if kind in ("integer", "number"):
            lo = s.get("minimum", s.get("exclusiveMinimum", 0))
            hi = s.get("maximum", s.get("exclusiveMaximum", lo + 10))
            value = lo + (n % 1001) / 1000 * (hi - lo)
            if kind == "integer":
                return int(min(max(round(value), int(lo) + ("exclusiveMinimum" in s)),
                               int(hi) - ("exclusiveMaximum" in s)))
            return round(value, 3)
        if kind == "null":
            return None
        words = [WORDS[(n >> (5 * i)) % len(WORDS)] for i in range(1 + n % 6)]
        if "pattern" in s:  # the first of a few plain values that the pattern accepts
            for probe in (" ".join(words), words[0], f"{n % 90 + 10}*{n % 7 + 2}", str(n % 100),
                          "a"):
                if re.fullmatch(s["pattern"], probe):
                    return probe
            raise InvalidOutputError(
                f"the stub model has no value that matches the pattern {s['pattern']!r} (it "
                "writes a few fixed shapes of text, not any pattern)",
                "run this agent on a real model (models.agent), or leave the pattern out "
                "while you exercise it on the stub")
        return " ".join(words)


class RehearsalLM(StubLM):
    """The stub's answers (to the last message), with a tally of what each call would cost a
    model: its prompt's characters (all of them, and those a model keeping its last ``streams``
    prompts would evaluate: a prefix of whole messages one of them shares is reused, as
    ``lm.llamacpp`` does) and its answer budget (``max_tokens``). ``budget.estimate`` rehearses
    a run on it with the trainer itself, so the estimate counts what the run does, phase by
    phase."""

    def __init__(self, streams: int = 8, as_stub: bool = False):
        self.as_stub = as_stub  # standing in for the stub itself: its answers exactly
        self.prompt_chars = 0  # of the calls made (a log-probability: its messages and text)
        self.new_chars = 0  # of those, the ones no recent prompt shares
        self.answer_budget = 0  # the first token budget of each answer made
        self.recent: deque[tuple[str, ...]] = deque(maxlen=streams)

    def _prompt(self, parts: list[str]) -> None:
        shared = max((next((i for i, (a, b) in enumerate(zip(parts, old)) if a != b),
                           min(len(parts), len(old))) for old in self.recent), default=0)
        self.prompt_chars += sum(map(len, parts))
        self.new_chars += sum(map(len, parts[shared:]))
        self.recent.append(tuple(parts))

    def complete(self, messages: list[Message], schema: type[BaseModel],
                 params: SamplingParams) -> Completion:
        self._prompt([f"{m.role}:{m.content}" for m in messages])
        self.answer_budget += params.max_tokens
        return super().complete(messages, schema, params)

    def logprob(self, messages, text: str) -> tuple[float, int]:
        self._prompt([f"{m.role}:{m.content}" for m in as_messages(messages)] + [text])
        return super().logprob(messages, text)

    def _answers_to(self, messages: list[Message]) -> list[Message]:
        """The last message only: a prompt, a demonstration or a rule an optimizer rewrites does
        not move the answer (the embedded model's own behaviour, measured: its text channel
        carries nothing), while the example, a tool's result and the schema do; standing in
        for the stub, its answers."""
        return messages if self.as_stub else messages[-1:]

    def usage(self) -> dict[str, float]:
        return {"prompt_chars": self.prompt_chars, "new_chars": self.new_chars,
                "answer_budget": self.answer_budget}
