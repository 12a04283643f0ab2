"""The compute budget of a training run: an estimate before it starts, a limit while it runs.

``estimate`` counts the LLM calls a config will make (forward passes over the test, validation
and training batches, the judge, one gradient per node run and one for the workflow, the
optimizers, validation of each candidate), their tokens (prompts rendered from the spec and the
first examples, answers at a typical share of their token budget) and the seconds on this
machine (from the prompt and answer speeds measured by earlier runs on the same model, kept in
the cache directory, or measured once now). Cache hits make a run cheaper than its estimate: it
is an upper bound for a re-run.

A ``budget`` in the config (calls, tokens or seconds, any of them) is enforced by the trainer at
step boundaries: when it is spent the run stops at its last checkpoint, cleanly, and says how to
go on (resume with a larger budget).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from localsym.agent.spec import PipelineSpec
from localsym.files import atomic_write_text
from localsym.learn.optim import LLM_OPTIMIZERS
from localsym.learn.propose.structure import structural_edits
from localsym.lm.base import Message, SamplingParams

ANSWER_SHARE = 0.6  # answers use about this share of their first token budget (measured: 0.4-0.8)
META_PROMPT_TOKENS = {"loss": 450, "gradient": 420, "workflow": 520, "prompt": 700, "tool": 600,
                      "pipeline": 800}  # rendered meta-prompts, measured on the examples


class _Calibration(BaseModel):
    answer: str


class Budget(BaseModel):
    """Limits of one run; None = no limit. Calls and tokens count calls made (cache misses)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    calls: int | None = Field(None, ge=1)
    tokens: int | None = Field(None, ge=1)
    seconds: float | None = Field(None, gt=0)

    def exceeded(self, spent: dict) -> str | None:
        for name in ("calls", "tokens", "seconds"):
            limit = getattr(self, name)
            if limit is not None and spent.get(name, 0) >= limit:
                return f"budget of {limit} {name} spent ({spent[name]:.0f})"
        return None


class Estimate(BaseModel):
    calls: int
    prompt_tokens: int
    answer_tokens: int
    seconds: float
    steps: int
    speeds: dict  # prompt and answer tokens/s used
    breakdown: dict  # calls per phase
    # where nothing is learned: training ends after ``patience`` steps (calls, seconds)
    early: dict | None = None

    def line(self) -> str:
        speed = "the stub model: no model time" if self.speeds.get("stub") else \
            f"{self.speeds['prompt']:.0f} prompt / {self.speeds['answer']:.0f} answer tokens/s"
        early = "" if not self.early else (
            f"; if nothing is learned it ends after {self.early['steps']} steps: about "
            f"{self.early['calls']} calls, {_duration(self.early['seconds'])}")
        return (f"estimate: {self.steps} steps, about {self.calls} LLM calls, "
                f"{(self.prompt_tokens + self.answer_tokens) / 1000:.0f}k tokens, "
                f"{_duration(self.seconds)} on this machine ({speed}; cache hits make it less)"
                f"{early}")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _calibration_file(lm) -> Path:
    return Path(lm.directory).parent / "speed.json"


def speeds(lm) -> dict:
    """Prompt and answer tokens/s of ``lm``'s model on this machine: remembered from earlier
    runs, else measured now with two short calls (the model is loaded for the run anyway)."""
    key = json.dumps(lm.identity(), sort_keys=True)
    path = _calibration_file(lm)
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    backend = lm.backend
    if lm.identity().get("backend") == "stub":  # no model: its answers take no time
        return {"prompt": None, "answer": None, "measured": False, "stub": True}
    if not backend.local or lm.mode == "replay":  # in-process llama.cpp only
        # an HTTP endpoint, the stub, or a replay (which must not need the model): no timing
        return {"prompt": 500.0, "answer": 50.0, "measured": False}
    backend.load()  # outside the timing
    t0 = time.perf_counter()
    text = "Count the objects: " + ", ".join(["a chair", "two lamps", "a desk"] * 20)
    # a schema call like the run's own (constrained decoding), closed at 32 tokens: it cannot
    # fail on a long answer the way free text cut at a limit does
    done = backend.complete([Message(role="user", content=text)], _Calibration,
                            SamplingParams(max_tokens=32, max_tokens_limit=32, on_limit="close"))
    prompt_speed = done.prompt_tokens / max(done.prefill_seconds, 1e-3)
    answer_speed = done.completion_tokens / max(done.seconds - done.prefill_seconds, 1e-3) \
        if done.completion_tokens else 50.0
    measured = {"prompt": round(prompt_speed, 1), "answer": round(answer_speed, 1),
                "measured": True, "calibration_seconds": round(time.perf_counter() - t0, 2)}
    known[key] = measured
    atomic_write_text(path, json.dumps(known, indent=1))
    return measured


def calls_per_example(spec) -> int:
    """Model calls one example costs at most (a tool loop counted at two steps, a vote at its
    samples, a check at its retries, a node with roles at its turn limit, and its controller's
    choices; a node whose call the spec writes still answers once)."""
    return sum(n.team.max_turns * (2 if n.team.policy == "model" else 1) if n.roles else
               (1 + (min(n.max_tool_steps, 2) if n.tools else 0)) *
               (n.vote.samples if n.vote else 1) + (n.check.retries if n.check else 0)
               for n in spec.nodes)


def estimate(c, spec: PipelineSpec, splits: dict, pipe, agent_lm) -> Estimate:
    """The estimate of a run (see the module doc): its config ``c`` (a ``RunConfig``), the
    agent's ``spec``, the ``splits`` (train, val, test), the agent's ``pipe``line and model."""
    node_prompt = _node_prompt_tokens(spec, pipe, (splits["train"] or splits["val"])[0].inputs)
    per_example = calls_per_example(spec)
    # a candidate may give a node a declared tool: count its calls as a tool node's
    per_candidate = sum(1 + (2 if n.tools or spec.tools else 0) for n in spec.nodes)
    # the judge runs only for examples without a ground truth (or with a person's feedback)
    judge = c.loss == "language" and (c.metric is None or any(
        ex.expected is None for ex in splits["train"]))
    steps = c.train.epochs * math.ceil(len(splits["train"]) / c.train.batch_size)
    steps = min(steps, c.train.max_steps or steps)
    batch = min(c.train.batch_size, len(splits["train"]))
    opts, t = c.train.optimizers, c.train
    # per step: one candidate per LLM optimizer, per demonstration size (labeled and
    # bootstrapped) and a merge; the structural edits are listed once (a spec is never screened
    # twice), so they are counted once, as tool-using candidates
    per_step = min(sum(o in opts for o in LLM_OPTIMIZERS) +
                   ("demonstrations" in opts) * 2 * len(t.demo_sizes), t.max_candidates) + \
        ("merge" in opts)
    listed = structural_edits(spec, pipe.tools)[:t.max_candidates] if "structure" in opts else []
    structural = len(listed)
    # each listed candidate at its own cost (a vote runs a node several times, a check again)
    listed_calls = sum(max(calls_per_example(c.spec), per_candidate) for c in listed)
    screen = min(t.screen_size, len(splits["train"]))
    candidates = per_step + structural
    meta = _meta_calls(c.train, spec, steps, batch, judge)
    test = len(splits["test"])
    calls = {"test (before and after)": 2 * test * per_example,
             "validation (start)": len(splits["val"]) * per_example,
             "forward": steps * batch * per_example,
             "loss (judge)": meta["loss"], "gradients": meta["gradient"],
             "workflow gradients": meta["workflow"],
             "optimizers": meta["prompt"] + meta["tool"] + meta["pipeline"],
             "screening (parent and candidates)": min(
                 steps * screen * per_example * (1 + per_step) + screen * listed_calls,
                 steps * (screen * per_example + (t.screen_calls or 10 ** 9))),
             "validation (candidates)": steps * min(t.max_validate, candidates) *
             len(splits["val"]) * per_candidate}
    agent_calls = calls["test (before and after)"] + calls["validation (start)"] + \
        calls["forward"] + calls["validation (candidates)"] + \
        calls["screening (parent and candidates)"]
    prompt_tokens = agent_calls * node_prompt + sum(META_PROMPT_TOKENS[k] * v
                                                    for k, v in meta.items())
    answer_tokens = agent_calls * c.sampling.max_tokens * ANSWER_SHARE + \
        sum(meta.values()) * c.meta_sampling.max_tokens * ANSWER_SHARE
    speed = speeds(agent_lm)
    seconds = 0.0 if speed.get("stub") else \
        prompt_tokens / speed["prompt"] + answer_tokens / speed["answer"]
    total = sum(calls.values())
    fixed = calls["test (before and after)"] + calls["validation (start)"]
    early = None
    if t.patience and t.patience < steps:  # the per-step calls, for patience steps only
        share = t.patience / steps
        early = {"steps": t.patience, "calls": int(fixed + (total - fixed) * share),
                 "seconds": round(seconds * (fixed + (total - fixed) * share) / max(total, 1),
                                  1)}
    return Estimate(calls=int(total), prompt_tokens=int(prompt_tokens),
                    answer_tokens=int(answer_tokens), seconds=round(seconds, 1), steps=steps,
                    speeds=speed, breakdown={k: int(v) for k, v in calls.items()}, early=early)


def _meta_calls(t, spec: PipelineSpec, steps: int, batch: int, judge: bool) -> dict[str, int]:
    """The meta calls of a run by kind: the judge, the gradients (a node's and the workflow's),
    one call per LLM optimizer a step runs (the prompt optimizer once per node)."""
    opts, n_nodes = t.optimizers, len(spec.nodes)
    return {"loss": steps * batch * judge,
            "gradient": steps * batch * (n_nodes if t.backprop else 0),
            "workflow": steps * batch * ("pipeline" in opts and t.backprop),
            "prompt": steps * n_nodes * ("prompt" in opts),
            "tool": steps * ("tool" in opts and bool(spec.tools)),
            "pipeline": steps * ("pipeline" in opts)}


def _node_prompt_tokens(spec: PipelineSpec, pipe, sample: dict) -> float:
    """A node call's prompt tokens, on average over the nodes, for one example's inputs (3.6
    characters a token)."""
    return sum(len(m["content"]) for node in spec.nodes
               for m in pipe.messages_for(node, {k: sample.get(k, "") for k in node.inputs})
               ) / 3.6 / max(1, len(spec.nodes))
