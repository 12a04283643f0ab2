"""A training run's directory, the one place that reads and writes it: the checkpoint
(``state.json``, one file per step under ``checkpoints/``, the spec of every step under
``specs/``, ``best_spec.json``) and the event log (``events.jsonl``).

``state.json`` is the commit point of a step: the spec files are written first, the state last,
each atomically (temporary file, fsync, rename). Every step's state is also kept under
checkpoints/, so a state.json damaged on disk falls back to the newest good one.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from localsym.errors import ConfigError
from localsym.faults import point
from localsym.files import append_jsonl, atomic_write_text, read_jsonl, rewrite_jsonl
from localsym.learn.events import StartEvent, StepEvent, StoppedEvent, parse_event
from localsym.learn.state import STATE_FORMAT, TrainState


class RunDirectory:
    """One run directory: every path in it (named here and nowhere else), its checkpoints and
    its events."""

    # what a run writes into its directory (anything else there is the user's)
    FILES = frozenset({"lock", "run.json", "config.yaml", "state.json", "events.jsonl", "specs",
                       "checkpoints", "best_spec.json", "summary.json", "report.html"})

    def __init__(self, run_dir: str | Path):
        self.run_dir = d = Path(run_dir)
        self.events_path = d / "events.jsonl"  # the event log
        self.state_path = d / "state.json"  # the checkpoint: a step's commit point
        self.checkpoints = d / "checkpoints"  # every step's state
        self.specs = d / "specs"  # every step's spec
        self.best_spec_path = d / "best_spec.json"
        self.summary_path = d / "summary.json"  # the run's result (``localsym train``)
        self.report_path = d / "report.html"
        self.run_json = d / "run.json"  # where the config's paths start, and its fingerprint
        self.config_copy = d / "config.yaml"  # the config the run began with
        self.lock_path = d / "lock"

    def spec_path(self, step: int) -> Path:
        return self.specs / f"step-{step:04d}.json"

    def holds_run(self) -> bool:
        """Whether a run began here (its run.json, or a checkpoint)."""
        return self.run_json.exists() or self.state_path.exists()

    def save_state(self, state: TrainState, spent: dict[str, float]) -> None:
        """Commit a step: its spec, the best spec, then the state (``spent`` so far)."""
        state.spec.save(self.spec_path(state.step))
        state.best_spec.save(self.best_spec_path)
        state.spent = spent
        text = state.model_dump_json(indent=1)
        atomic_write_text(self.checkpoints / f"step-{state.step:04d}.json", text)
        atomic_write_text(self.state_path, text)
        point("checkpoint.saved")

    def load_state(self, log=print) -> TrainState | None:
        """The checkpoint: state.json, or if that is missing or damaged (torn, truncated, not a
        state) the newest readable file in checkpoints/. None when there is none at all."""
        candidates = [self.state_path] + sorted(self.checkpoints.glob("step-*.json"),
                                                reverse=True)
        problems = []
        for path in candidates:
            if not path.is_file():
                continue
            try:
                state = TrainState.model_validate_json(path.read_text("utf-8", errors="replace"))
            except ValueError as err:
                problems.append(f"{path.name}: {str(err).splitlines()[0]}")
                continue
            if problems:
                log(f"checkpoint damaged ({'; '.join(problems)}); resuming from "
                         f"{path.relative_to(self.run_dir)} (step {state.step})")
            return state
        if problems:
            raise ConfigError(f"no readable checkpoint in {self.run_dir}: {'; '.join(problems)}",
                              "start a new run directory, or restore state.json") from None
        return None

    def reconcile_events(self, state: TrainState | None) -> None:
        """Make the event log agree with the checkpoint before resuming: keep its events up to
        the checkpoint's step, each step once; drop torn lines, records that are not events,
        and the events of a step that was logged but not checkpointed (it runs again)."""
        if not self.events_path.is_file() and state is None:
            return
        done = state.step if state is not None else -1
        kept, seen = [], set()
        for event in self.events():
            key = (event.event, event.step)
            after = key[1] > done if key[0] != "start" else done < 0
            if key in seen or after:
                continue
            seen.add(key)
            kept.append(event)
        pool = getattr(state, "pool", None)
        if pool and not any(e.event == "start" for e in kept):
            # an emptied or truncated log: its start is known from the checkpoint's pool
            kept.insert(0, StartEvent(val_score=pool[0].mean))
        rewrite_jsonl(self.events_path, [_record(e) for e in kept])

    def event(self, event: StartEvent | StepEvent | StoppedEvent) -> None:
        """Append ``event``, stamped with the time."""
        event.time = time.time()
        append_jsonl(self.events_path, _record(event))

    def events(self) -> list[StartEvent | StepEvent | StoppedEvent]:
        """The log's events in order (a torn line or a record that is not an event left out)."""
        return self.read()[0]

    def read(self) -> tuple[list[StartEvent | StepEvent | StoppedEvent], int]:
        """The log's events, and how many of its readable records are not events."""
        records = read_jsonl(self.events_path) if self.events_path.is_file() else []
        events = [e for e in map(parse_event, records) if e is not None]
        return events, len(records) - len(events)

    def start(self) -> StartEvent | None:
        return next((e for e in self.events() if isinstance(e, StartEvent)), None)

    def steps(self) -> list[StepEvent]:
        return [e for e in self.events() if isinstance(e, StepEvent)]


def run_origin(agent_key: str, train: list, val: list, sampling) -> dict[str, str]:
    """What shapes a run besides its config: the agent it starts from (its key), the examples
    of each split, the agent's sampling (sha256 digests, kept in the checkpoint)."""
    def digest(data) -> str:
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()
                              ).hexdigest()[:16]
    return {"agent": agent_key, "train": digest([ex.model_dump(mode="json") for ex in train]),
            "val": digest([ex.model_dump(mode="json") for ex in val]),
            "sampling": digest(sampling.model_dump(mode="json"))}


def check_resume(state: TrainState, config, origin: dict[str, str], where) -> None:
    """The one resume guard (``localsym train --resume`` and ``localsym.train(resume=True)``
    both pass here): the checkpoint must have been written by this version's format, and a
    run of this config, agent, data and sampling."""
    fix = ("resume with the run's own config, agent and data (and localsym version), or "
           "start a new run directory (the cache makes the repeated calls free)")
    if state.format != STATE_FORMAT:
        raise ConfigError(f"the checkpoint in {where} was written by an earlier localsym "
                          f"(checkpoint format {state.format}, before edits were typed; this "
                          f"version writes format {STATE_FORMAT}) and cannot be resumed by "
                          "this one", "finish it with the version that started it, or start "
                          "a new run directory (the cache makes the repeated calls free)")
    if state.config != config:
        raise ConfigError(f"the checkpoint in {where} was written with another "
                          f"training config ({state.config.differences(config)})", fix)
    changed = [k for k, v in (state.origin or {}).items() if origin.get(k) != v]
    if changed:
        raise ConfigError(f"the checkpoint in {where} was written by a run with another "
                          f"{', '.join(changed)}", fix)


def _record(event) -> dict:
    return event.model_dump(mode="json")
