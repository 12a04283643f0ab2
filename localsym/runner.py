"""A training run from a config: datasets, models, the trainer, the run directory, the summary.

The run directory holds the exact config (config.yaml), the event log (events.jsonl), the spec
after every step (specs/), the checkpoint (state.json), the best agent (best_spec.json) and the
summary (summary.json: scores before and after on validation and test, LLM calls made and
cached, wall time).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel
from tqdm import tqdm

from localsym.agent import Pipeline, default_tools
from localsym.agent.tools import add_references
from localsym.budget import Budget, estimate
from localsym.config import RunConfig, load_config
from localsym.errors import ConfigError
from localsym.files import atomic_write_text, read_text
from localsym.learn import Trainer
from localsym.learn.checkpoint import RunDirectory
from localsym.learn.search import FrontPoint, front_points
from localsym.lm.base import Usage
from localsym.lm.cache import CachedLM
from localsym.lm.stub import RehearsalLM
from localsym.metrics import metric
from localsym.rundata import load_spec, load_splits

def final_cost(state) -> dict:
    """The final agent's model calls, tokens and seconds per validation example (its pool
    entry), the start's calls, and the pool's Pareto front over (score, cost)."""
    def r(v: float | None, digits: int) -> float | None:
        return None if v is None else round(v, digits)
    entry = next((e for e in state.pool if e.spec == state.best_spec), None)
    return {"start_calls": r(state.pool[0].calls, 3) if state.pool else None,
            "calls_per_example": r(entry.calls, 3) if entry else None,
            "tokens_per_example": r(entry.tokens, 1) if entry else None,
            "seconds_per_example": r(entry.seconds, 3) if entry else None,
            "front": front_points(state.pool)}



class RunSummary(BaseModel):
    """What ``localsym train`` reports of a run (``summary.json``): scores before and after on
    validation and test, the sizes of the splits, the LLM calls of each model, the wall time,
    and why the run stopped early (its budget), if it did."""

    name: str
    steps: int
    accepted: int
    rolled_back: int
    val_before: float | None
    val_after: float
    test_before: float | None
    test_after: float | None
    test_size: int
    val_size: int
    train_size: int
    llm_calls: dict[str, Usage]
    wall_seconds: float
    stopped: str | None = None
    ended: str | None = None  # why training ended before its last step (nothing learned)
    spent: dict[str, float] = {}
    calls_per_example: float | None = None  # the final agent's, on validation
    tokens_per_example: float | None = None
    seconds_per_example: float | None = None  # wall, on this machine, with this cache
    front: list[FrontPoint] = []  # the pool's (score, cost) Pareto front at the end
    start_calls: float | None = None  # the agent's as it started

    @property
    def calls_made(self) -> int:
        return sum(u.misses for u in self.llm_calls.values())

    @property
    def calls_cached(self) -> int:
        return sum(u.hits for u in self.llm_calls.values())

class Run:
    """Everything a run needs, built from a config."""

    def __init__(self, config: RunConfig, base: Path, run_dir: Path | None = None,
                 quiet: bool = False):
        self.config, self.base, self.quiet = config, base, quiet
        # default: a new directory per run, so running a config again just works (and, with the
        # cache, costs almost nothing)
        self.run_dir = Path(run_dir or config.run_dir or
                            Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        # the user's own code first: a bad reference fails before anything is loaded
        self.metric = metric(config.metric, base, config.metric_timeout) if config.metric \
            else None
        self.tools = add_references(default_tools(), config.tools, base)
        cache = config.cache
        models = config.models
        self.agent_lm = models.open("agent", cache)
        self.optimizer_lm = self.agent_lm if models.shared() else models.open("optimizer", cache)
        self.spec = load_spec(config, base)
        self.pipeline = Pipeline(self.spec, self.agent_lm, self.tools, config.sampling)
        self.splits = load_splits(config, base, self.spec, self.optimizer_lm)

    def trainer(self) -> Trainer:
        return self.config.trainer(self.spec, self.agent_lm, self.optimizer_lm, self.tools,
                                   self.metric, self.run_dir, loss=self.config.loss,
                                   log=self._say, progress=not self.quiet,
                                   budget=self.config.budget)

    def _say(self, text: str) -> None:
        if not self.quiet:
            tqdm.write(text)

    def estimate(self):
        return estimate(self)

    def rehearsal(self, directory: Path) -> "Run":
        """This run's twin for ``budget.estimate``: its data, tools, metric and config (less its
        budget), on rehearsal models with their own cache, its run directory in ``directory``."""
        twin = copy.copy(self)
        twin.config = self.config.model_copy(update={"budget": Budget()})
        twin.run_dir, twin.quiet = directory / "run", True
        def stand_in(lm, role: str) -> CachedLM:
            stub = lm.identity().get("backend") == "stub"
            return CachedLM(RehearsalLM(as_stub=stub), directory / role, "readwrite")
        twin.agent_lm = stand_in(self.agent_lm, "agent")
        twin.optimizer_lm = twin.agent_lm if self.optimizer_lm is self.agent_lm else \
            stand_in(self.optimizer_lm, "optimizer")
        twin.pipeline = Pipeline(self.spec, twin.agent_lm, self.tools, self.config.sampling)
        return twin

    def lm_stats(self) -> dict[str, Usage]:
        lms = {"agent": self.agent_lm}
        if self.optimizer_lm is not self.agent_lm:
            lms["optimizer"] = self.optimizer_lm
        return {name: Usage.model_validate(lm.usage()) for name, lm in lms.items()}

    def train(self, resume: bool = False) -> "RunSummary":
        started = time.perf_counter()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        trainer = self.trainer()
        test = self.splits["test"]
        test_before = trainer.score(self.spec, test, "test (before)") if test else []
        state = trainer.fit(self.splits["train"], self.splits["val"], resume=resume)
        # a run stopped by its budget is not scored on test (that would spend more)
        test_after = trainer.score(state.best_spec, test, "test (after)") \
            if test and not state.stopped else []
        steps = trainer.dir.steps()
        summary = RunSummary(
            name=self.config.name, steps=state.step,
            accepted=sum(e.decision == "accepted" for e in steps),
            rolled_back=sum(e.decision == "rolled back" for e in steps),
            val_before=trainer.dir.start().val_score, val_after=state.best_score,
            test_before=_mean(test_before), test_after=_mean(test_after),
            test_size=len(test), val_size=len(self.splits["val"]),
            train_size=len(self.splits["train"]), llm_calls=self.lm_stats(),
            wall_seconds=round(time.perf_counter() - started, 1), stopped=state.stopped,
            ended=state.ended, spent=state.spent, **final_cost(state))
        atomic_write_text(RunDirectory(self.run_dir).summary_path,
                          summary.model_dump_json(indent=2))
        return summary

    def close(self) -> None:
        self.agent_lm.close()
        if self.optimizer_lm is not self.agent_lm:
            self.optimizer_lm.close()


def _mean(scores: list[float]) -> float | None:
    return round(float(np.mean(scores)), 4) if scores else None


def check_new_run_dir(run_dir: Path) -> None:
    """A new run writes its files into ``run_dir``: refuse a file, and a directory that holds
    anything but a run's own files (``--run-dir .`` would overwrite the user's config.yaml)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--run-dir {run_dir} is a file, not a directory",
                          "give a new directory for the run (it is created)")
    if RunDirectory(run_dir).holds_run():
        return  # a run's own directory: refused below as "already holds a run"
    if run_dir.is_dir():
        foreign = sorted(p.name for p in run_dir.iterdir() if p.name not in RunDirectory.FILES)
        if foreign:
            raise ConfigError(f"--run-dir {run_dir} is not a run directory: it holds "
                              f"{', '.join(foreign[:4])}{' ...' if len(foreign) > 4 else ''}, "
                              "which the run's own files (config.yaml, summary.json, ...) could "
                              "overwrite", "give a new or empty directory for the run")


def lock_run_dir(run_dir: Path):
    """Hold an exclusive lock on ``run_dir`` for this process's life (released when it exits,
    however it exits). A second process training into the same directory is refused, naming
    the holder, instead of logging every step twice."""
    import fcntl  # noqa: PLC0415 (POSIX only)
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(RunDirectory(run_dir).lock_path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(f"run directory {run_dir} is in use by {holder}",
                          "wait for that run to finish (or stop it), or train into another "
                          "--run-dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"localsym pid {os.getpid()}")
    handle.flush()
    _LOCKS.append(handle)
    return handle


_LOCKS: list = []  # the open lock files of this process


def fingerprint(config: RunConfig, base: Path) -> dict:
    """Everything that shapes a run's training: the config (less its name, run directory,
    budget and cache settings, which a resume may change) and the sha256 of every file it
    names (agent spec, datasets, the user's metric and tool files)."""
    def digest(rel: str | None):
        if not rel:
            return None
        path = (base / rel).resolve()
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else str(path)
    data = config.model_dump(mode="json", exclude={"name", "run_dir", "budget", "cache",
                                                    "agent"})
    files = {"agent": digest(config.agent)}
    for name in ("train", "val", "test", "path"):  # a dataset file counts by its content
        files[f"dataset.{name}"] = digest(data["dataset"].pop(name, None))
    refs = [config.metric or ""] + [t if isinstance(t, str) else t.ref for t in config.tools]
    for ref in refs:
        module = ref.rpartition(":")[0]
        if module.endswith(".py"):
            files[module] = digest(module)
    return {"config": data, "files": files}


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def open_run(config_path: str | Path | None, resume_dir: str | Path | None = None,
             run_dir: str | Path | None = None, quiet: bool = False) -> Run:
    """Build a Run from a config file, or from the config copy inside ``resume_dir``.

    A new run directory gets its config copy and run.json before any work starts, so a run
    killed at any moment, even before its first checkpoint, can be resumed. The directory is
    locked while this process lives; a resume must shape the run exactly as it began."""
    if resume_dir is not None:
        resume_dir = Path(resume_dir)
        rd = RunDirectory(resume_dir)
        if not rd.run_json.is_file() or not (config_path or rd.config_copy.is_file()):
            raise ConfigError(f"{resume_dir} is not a training run directory (no run.json and "
                              f"config.yaml)", "pass the run directory of an earlier "
                                               "`localsym train`")
        lock_run_dir(resume_dir)
        meta = json.loads(rd.run_json.read_text())
        source = Path(config_path) if config_path else rd.config_copy
        config, base = load_config(source)
        if config_path is None:  # the copy's relative paths start at the original's place
            base = Path(meta["base"])
        if "fingerprint" in meta:
            changed = _differences(meta["fingerprint"], fingerprint(config, base))
            if changed:
                raise ConfigError(
                    f"cannot resume {resume_dir}: {', '.join(changed[:6])} differ from what the "
                    f"run began with", "resume with the run's own config and files (omit CONFIG "
                    "to use the copy in the run directory), or start a new run directory")
        return Run(config, base, resume_dir, quiet)
    if config_path is None:
        raise ConfigError("no config given", "localsym train CONFIG (see examples/*/config.yaml)")
    config, base = load_config(config_path)
    chosen = run_dir or config.run_dir  # lock it before building anything; a default one after
    if chosen:
        check_new_run_dir(Path(chosen))
        lock_run_dir(Path(chosen))
    run = Run(config, base, Path(run_dir) if run_dir else None, quiet)
    if not chosen:
        lock_run_dir(run.run_dir)
    rd = RunDirectory(run.run_dir)
    if rd.holds_run():
        raise ConfigError(f"run directory {run.run_dir} already holds a run",
                          f"resume it with --resume {run.run_dir}, or pass --run-dir NEW")
    run.run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(rd.config_copy, read_text(config_path, "config"))
    atomic_write_text(rd.run_json, json.dumps(
        {"base": str(base.resolve()), "fingerprint": fingerprint(config, base)}))
    return run
