"""The compute budget of a training run: an estimate before it starts, a limit while it runs.

``estimate`` rehearses the run: the trainer itself runs it, on a stand-in model that answers
every call at once (``lm.stub.RehearsalLM``) and tallies what each call would cost the real one
(its prompt, its answer budget), with the run's own data, tools, metric, program search and
schedule, in a directory of its own. So the estimate counts the calls the run's phases make
(forward passes, loss, gradients, optimizers, screening, racing, validation, the steps a run that
learns nothing stops after) from the code that makes them, not from a second model of a step.
Their seconds on this machine come from the prompt and answer speeds of the run's model(s),
measured once and kept in the cache directory; the rehearsal's own wall time is the run's work
besides the model (tools, searches, the metric). Where the model's answers take the run another
way than the stand-in's (a candidate accepted or not), the run differs; cache hits make it cheaper.

A ``budget`` in the config (calls, tokens or seconds, any of them) is enforced by the trainer at
step boundaries: when it is spent the run stops at its last checkpoint, cleanly, and says how to
go on (resume with a larger budget).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from localsym.files import atomic_write_text
from localsym.learn.checkpoint import RunDirectory
from localsym.lm.base import Message, SamplingParams

ANSWER_SHARE = 0.4  # the share of its first token budget an answer uses (Quick start: 0.37)
CHARS_PER_TOKEN = 3.6  # of a prompt, where the model's own figure was not measured


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
    """What a rehearsal of the run counted (``estimate``)."""

    calls: int  # LLM calls made, all models together (cache misses of an empty cache)
    prompt_tokens: int
    answer_tokens: int
    seconds: float  # on this machine: the model's time at its speeds plus the rehearsal's own
    steps: int
    speeds: dict  # per model role: prompt and answer tokens/s used
    breakdown: dict  # calls outside the steps, and made in each step
    rehearsal_seconds: float  # the run's work besides the model (tools, searches, metric)
    ended: str | None = None  # why the rehearsed run ended before its last step

    def line(self) -> str:
        speed = "; ".join(
            f"{role}: the stub model, no model time" if s.get("stub") else
            f"{role}: {s['prompt']:.0f} prompt / {s['answer']:.0f} answer tokens/s"
            for role, s in self.speeds.items())
        ended = f"; the rehearsal ended early: {self.ended.split(';')[0]}" if self.ended else ""
        return (f"estimate: {self.steps} steps, about {self.calls} LLM calls, "
                f"{(self.prompt_tokens + self.answer_tokens) / 1000:.0f}k tokens, "
                f"{_duration(self.seconds)} on this machine ({speed}; rehearsed by the trainer "
                f"on a stand-in model: the model's own answers may take the run another way, "
                f"and cache hits make it cheaper){ended}")


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
    # a schema call like the run's own (constrained decoding), closed at 32 tokens: it cannot
    # fail on a long answer the way free text cut at a limit does; the first call of a loaded
    # model sets it up, so it is not the one timed
    params = SamplingParams(max_tokens=32, max_tokens_limit=32, on_limit="close")
    backend.complete([Message(role="user", content="Answer yes or no: is 2 even?")],
                     _Calibration, params)
    t0 = time.perf_counter()
    text = " ".join(f"In room {i} there are {i % 4 + 1} chairs, a lamp and {i % 3 + 2} books on "
                    f"the desk; how many objects are in room {i}?" for i in range(12))
    done = backend.complete([Message(role="user", content=text)], _Calibration, params)
    prompt_speed = done.prompt_tokens / max(done.prefill_seconds, 1e-3)
    answer_speed = done.completion_tokens / max(done.seconds - done.prefill_seconds, 1e-3) \
        if done.completion_tokens else 50.0
    measured = {"prompt": round(prompt_speed, 1), "answer": round(answer_speed, 1),
                "chars_per_token": round(len(text) / max(done.prompt_tokens, 1), 2),
                "measured": True, "calibration_seconds": round(time.perf_counter() - t0, 2)}
    known[key] = measured
    atomic_write_text(path, json.dumps(known, indent=1))
    return measured


def estimate(run) -> Estimate:
    """The estimate of ``run`` (a ``runner.Run``; see the module doc): the run rehearsed by the
    trainer itself on the rehearsal model, in a directory of its own, its calls counted and
    their tokens priced at this machine's speeds for the run's model(s)."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="localsym-rehearsal-") as tmp:
        twin = run.rehearsal(Path(tmp))
        try:
            summary = twin.train()
            steps = RunDirectory(twin.run_dir).steps()
        finally:
            twin.close()
    rehearsal = time.perf_counter() - started  # the run's own work: tools, searches, metric
    roles = {"agent": (run.agent_lm, twin.agent_lm)}
    if run.optimizer_lm is not run.agent_lm:
        roles["optimizer"] = (run.optimizer_lm, twin.optimizer_lm)
    calls = prompt = answer = 0
    seconds, speed = rehearsal, {}
    for role, (lm, rehearsed) in roles.items():
        used = rehearsed.usage()
        speed[role] = speeds(lm)
        per_token = speed[role].get("chars_per_token", CHARS_PER_TOKEN)
        n_prompt = used["prompt_chars"] / per_token
        n_answer = used["answer_budget"] * ANSWER_SHARE
        calls, prompt, answer = calls + used["misses"], prompt + n_prompt, answer + n_answer
        if not speed[role].get("stub"):  # a prompt prefix the model holds is not evaluated
            seconds += used["new_chars"] / per_token / speed[role]["prompt"] + \
                n_answer / speed[role]["answer"]
    in_steps = [e.llm_calls.get("made", 0) for e in steps]
    return Estimate(calls=int(calls), prompt_tokens=int(prompt), answer_tokens=int(answer),
                    seconds=round(seconds, 1), steps=summary.steps, speeds=speed,
                    rehearsal_seconds=round(rehearsal, 2),
                    breakdown={"outside the steps (validation at the start, test before "
                               "and after)": int(calls) - sum(in_steps), "steps": in_steps},
                    ended=summary.ended)
