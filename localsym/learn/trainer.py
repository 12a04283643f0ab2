"""The training loop: forward, loss, backward, optimizer steps, and the validation gate.

Every candidate update is scored on the validation split and accepted only if the score does not
drop by more than ``threshold`` (or, with ``paired_test``, only if a paired permutation test on
the per-example scores finds it better at level ``alpha``); otherwise the previous spec, an
immutable value, is restored exactly. The best spec so far is kept. After every step the state
is checkpointed atomically to the run directory, and ``resume`` continues from it: batches come
from a seeded order and every LLM call is deterministic (and cached), so a resumed run ends with
the same agent as an uninterrupted one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from localsym.agent.pipeline import NODE_FAILURES, Pipeline
from localsym.agent.spec import PipelineSpec
from localsym.data import Example, Metric
from localsym.errors import ConfigError
from localsym.faults import point
from localsym.io import append_jsonl, atomic_write_text, read_jsonl, rewrite_jsonl
from localsym.learn.backward import backward_batch, loss_as_gradients
from localsym.learn.loss import Loss
from localsym.learn.optim import Batch, Optimizer, UpdateRecord
from localsym.lm.base import LM, SamplingParams

OptimizerName = Literal["prompt", "tool", "pipeline", "demonstrations"]


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(4, ge=1)
    seed: int = Field(0, ge=0)
    threshold: float = Field(0.0, ge=0.0, description="largest validation drop still accepted")
    paired_test: bool = False
    alpha: float = Field(0.1, gt=0.0, lt=1.0)
    optimizers: tuple[OptimizerName, ...] = ("prompt", "tool", "pipeline", "demonstrations")
    schedule: Literal["all", "cycle"] = Field(
        "all", description="all: every optimizer every step; cycle: one per step, in turn")
    max_steps: int | None = Field(None, ge=1)
    backprop: bool = Field(True, description="back-propagate language gradients node by node "
                           "(false: every node gets the final loss's feedback alone, no "
                           "gradient calls: the AutoPE-style ablation)")


class TrainState(BaseModel):
    """Everything needed to continue a run: the checkpoint."""

    config: TrainConfig
    step: int = 0
    epoch: int = 0
    batch_index: int = 0
    spec: PipelineSpec
    val_scores: list[float]
    best_spec: PipelineSpec
    best_score: float
    memory: list[UpdateRecord] = []
    done: bool = False
    spent: dict[str, float] = {}  # LLM calls made, their tokens, wall seconds: over all segments
    stopped: str | None = None  # why the run stopped before its end (a budget)


def progress_bar(items, desc: str, enabled: bool = True, total: int | None = None):
    """A tqdm bar over ``items``, or (items None) one advanced by hand up to ``total``."""
    from tqdm import tqdm

    return tqdm(items, desc=desc, leave=False, disable=not enabled, unit="ex", dynamic_ncols=True,
                total=total)


def ordered_map(fn, items: list, workers: int = 1, bar=None) -> list:
    """``[fn(x) for x in items]``, with up to ``workers`` calls in flight (an HTTP backend's
    parallel slots); results always in the order of ``items``, so a run stays reproducible."""
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import nullcontext

    parallel = workers > 1 and len(items) > 1
    with ThreadPoolExecutor(workers, thread_name_prefix="localsym") if parallel \
            else nullcontext() as pool:
        out = []
        for result in (pool.map if parallel else map)(fn, items):
            out.append(result)
            if bar is not None:
                bar.update(1)
        return out


def concurrency(pipeline: Pipeline) -> int:
    return int(getattr(pipeline.lm, "max_concurrency", 1))


def forward_all(pipeline: Pipeline, examples: list[Example], bar=None) -> list:
    """Trajectories of ``examples`` in order: node-major on one in-process model (shared prompt
    prefixes stay in the KV cache), concurrent requests on an HTTP backend."""
    if concurrency(pipeline) > 1:
        return ordered_map(lambda ex: pipeline.forward(ex.inputs), examples,
                           concurrency(pipeline), bar)
    if bar is not None:
        bar.reset(total=len(examples) * max(1, len(pipeline.spec.nodes)))
        bar.unit = "call"
    return pipeline.forward_batch([ex.inputs for ex in examples],
                                  progress=bar.update if bar is not None else None)


def evaluate(pipeline: Pipeline, examples: list[Example], metric: Metric | None, loss: Loss,
             bar=None) -> list[float]:
    """Run ``pipeline`` on each example and score it: the metric where the example has a ground
    truth, else the loss's score (the judge). A run that failed scores 0 under the metric. With
    an HTTP backend the examples run concurrently (``concurrency``); scores keep their order."""
    examples = list(examples)
    trajectories = forward_all(pipeline, examples, bar)

    def score(pair) -> float:
        traj, ex = pair
        if metric is not None and ex.expected is not None:
            return 0.0 if not traj.ok else float(metric(traj.outputs, ex.expected))
        return loss(traj, ex).score

    out = ordered_map(score, list(zip(trajectories, examples)), concurrency(pipeline))
    if bar is not None and out:
        bar.set_postfix(score=f"{np.mean(out):.3f}")
    return out


def permutation_p_value(new: list[float], old: list[float], seed: int = 0,
                        rounds: int = 4000) -> float:
    """One-sided paired sign-flip test: the chance of a mean improvement at least this large if
    the update changed nothing."""
    d = np.asarray(new) - np.asarray(old)
    if not d.any():
        return 1.0
    flips = np.random.default_rng(seed).choice([-1.0, 1.0], size=(rounds, d.size))
    return float(((flips * d).mean(axis=1) >= d.mean()).mean())


class Trainer:
    """Train ``pipeline`` on examples. ``lm`` runs the loss, backward and the optimizers (it may
    be a larger model than the agent's own); ``metric`` scores validation when examples have
    expected outputs (else the loss's score is used)."""

    def __init__(self, pipeline: Pipeline, loss: Loss, optimizers: dict[str, Optimizer],
                 lm: LM, config: TrainConfig | None = None, metric: Metric | None = None,
                 run_dir: str | Path | None = None, log=print,
                 meta_params: SamplingParams | None = None, progress: bool = False,
                 budget=None):
        self.pipeline, self.loss, self.lm = pipeline, loss, lm
        self.progress = progress  # tqdm bars over forward passes and evaluations
        self.meta_params = meta_params  # sampling of the backward calls (default META_PARAMS)
        self.config = config or TrainConfig()
        unknown = set(self.config.optimizers) - set(optimizers)
        if unknown:
            raise ConfigError(f"config names optimizers {sorted(unknown)} that were not given",
                              f"given: {sorted(optimizers)}")
        self.optimizers = optimizers
        self.metric = metric
        self.run_dir = Path(run_dir) if run_dir else None
        self.log = log
        self.budget = budget  # localsym.budget.Budget, checked between steps
        self._origin = self._usage()  # what this process had spent before training
        self._base: dict[str, float] = {}

    # -- scoring ------------------------------------------------------------------------------
    def bar(self, items, desc: str, total: int | None = None):
        return progress_bar(items, desc, self.progress, total)

    def score(self, spec: PipelineSpec, examples: list[Example], desc: str = "validation"
              ) -> list[float]:
        """Per-example scores of ``spec`` (see ``evaluate``)."""
        saved = self.pipeline.spec
        self.pipeline.spec = spec
        try:
            with self.bar(None, desc, len(examples)) as bar:
                return evaluate(self.pipeline, examples, self.metric, self.loss, bar)
        finally:
            self.pipeline.spec = saved

    def accept(self, new: list[float], old: list[float], step: int) -> tuple[bool, str]:
        gain = float(np.mean(new) - np.mean(old))
        if gain < -self.config.threshold:
            return False, f"validation dropped by {-gain:.3f}"
        if self.config.paired_test:
            p = permutation_p_value(new, old, seed=self.config.seed + step)
            if p >= self.config.alpha:
                return False, f"no significant gain (paired test p={p:.3f} >= {self.config.alpha})"
            return True, f"gain {gain:+.3f}, p={p:.3f}"
        return True, f"validation change {gain:+.3f}"

    # -- the loop -----------------------------------------------------------------------------
    def order(self, n: int, epoch: int) -> list[int]:
        return np.random.default_rng([self.config.seed, epoch]).permutation(n).tolist()

    def fit(self, train: list[Example], val: list[Example], resume: bool = False) -> TrainState:
        if not train or not val:
            raise ConfigError("training needs a non-empty train and validation split",
                              "give both splits at least one example")
        state = self.load_state() if resume else None
        if resume:
            self._reconcile_events(state)
        if state is not None and state.config != self.config:
            raise ConfigError(f"the checkpoint in {self.run_dir} was written with another training "
                              f"config ({state.config.model_dump()})",
                              "resume with the run's own config, or start a new run directory")
        if state is not None:
            self._base = dict(state.spent)
            state.stopped = None  # resumed: perhaps with a larger budget
            self.save_state(state)  # rewrites a damaged state.json from the checkpoint used
        else:
            spec = self.pipeline.spec
            scores = self.score(spec, val)
            state = TrainState(config=self.config, spec=spec, val_scores=scores, best_spec=spec,
                               best_score=float(np.mean(scores)))
            self._event({"event": "start", "val_score": state.best_score})
            self.save_state(state)
        self.pipeline.spec = state.spec
        cfg = self.config
        batches = (len(train) + cfg.batch_size - 1) // cfg.batch_size
        while not state.done:
            if state.epoch >= cfg.epochs or (cfg.max_steps and state.step >= cfg.max_steps):
                state.done = True
                self.save_state(state)
                break
            over = self.budget.exceeded(self.spent()) if self.budget is not None else None
            if over:
                state.stopped = over
                self.save_state(state)
                self._event({"event": "stopped", "step": state.step, "reason": over,
                             "spent": state.spent})
                self.log(f"stopped after step {state.step}: {over}")
                break
            order = self.order(len(train), state.epoch)
            batch = [train[i] for i in order[state.batch_index * cfg.batch_size:
                                             (state.batch_index + 1) * cfg.batch_size]]
            self._step(state, batch, val)
            state.batch_index += 1
            if state.batch_index >= batches:
                state.epoch, state.batch_index = state.epoch + 1, 0
            self.save_state(state)
        self.pipeline.spec = state.best_spec
        return state

    def _count(self, counter: str) -> int:
        """A counter summed over both LMs (the same LM counted once)."""
        lms = {id(lm): lm for lm in (self.pipeline.lm, self.lm)}.values()
        return sum(getattr(lm, counter, 0) for lm in lms)

    def _usage(self) -> dict[str, float]:
        return {"calls": self._count("misses"), "tokens": self._count("tokens_made"),
                "seconds": time.perf_counter()}

    def spent(self) -> dict[str, float]:
        """Spent over the whole run: earlier segments (from the checkpoint) plus this one."""
        now = self._usage()
        return {k: round(self._base.get(k, 0) + now[k] - self._origin[k], 3) for k in now}

    def _calls(self) -> dict[str, int]:
        """LLM calls so far: made (cache misses) and served from the cache, both LMs."""
        return {"made": self._count("misses"), "cached": self._count("hits")}

    def _step(self, state: TrainState, batch: list[Example], val: list[Example]) -> None:
        started = time.perf_counter()
        calls_before = self._calls()
        state.step += 1
        spec = state.spec
        self.pipeline.spec = spec
        with self.bar(None, f"step {state.step}: forward", len(batch)) as bar:
            trajectories = forward_all(self.pipeline, batch, bar)
        point("step.forward")
        want_flow = "pipeline" in self._optimizers_for(state.step)
        losses, grads, failures = [], [], []
        # A meta call that fails (an answer the schema cannot hold, a cut-off answer) costs its
        # example or its optimizer in this step, never the run. Losses first, then gradients
        # layer by layer over the batch: calls that share a prompt prefix run back to back.
        scored = []
        bar = self.bar(list(zip(trajectories, batch)), f"step {state.step}: loss")
        for traj, ex in bar:
            try:
                losses.append(self.loss(traj, ex))
                scored.append((traj, ex))
                bar.set_postfix(loss=f"{np.mean([l.score for l in losses]):.3f}")
            except NODE_FAILURES as err:
                failures.append(f"example {ex.id}: {type(err).__name__}: {err.cause}")
        if self.config.backprop:
            results = backward_batch([t for t, _ in scored], losses, spec, self.lm,
                                     [ex.id for _, ex in scored], params=self.meta_params,
                                     workflow=want_flow, failures=NODE_FAILURES)
        else:
            results = [loss_as_gradients(t, l, ex.id) for (t, ex), l in zip(scored, losses)]
        for (_, ex), result in zip(scored, results):
            if isinstance(result, Exception):
                failures.append(f"example {ex.id}: {type(result).__name__}: {result.cause}")
            else:
                grads.append(result)
        ok_ids = {g.example_id for g in grads}
        ok_trajectories = [t for t, ex in zip(trajectories, batch) if ex.id in ok_ids]
        point("step.backward")
        data = Batch(trajectories=ok_trajectories, gradients=grads)
        candidate, changes, rejected = spec, [], []
        for name in self._optimizers_for(state.step) if grads else []:
            try:
                proposal = self.optimizers[name].step(candidate, data, state.memory)
            except NODE_FAILURES as err:
                failures.append(f"optimizer {name}: {type(err).__name__}: {err.cause}")
                continue
            candidate = proposal.spec
            changes += [(name, c.target) for c in proposal.changes]
            rejected += [f"{name}: {r}" for r in proposal.rejected]
        event = {"event": "step", "step": state.step, "epoch": state.epoch,
                 "batch": [ex.id for ex in batch], "losses": [l.model_dump() for l in losses],
                 "gradients": [g.model_dump() for g in grads], "failures": failures,
                 "changes": [f"{n}: {t}" for n, t in changes], "rejected_edits": rejected}
        before = float(np.mean(state.val_scores))
        if candidate == spec:
            event.update(decision="no change", val_before=before, val_after=before)
        else:
            point("step.update")
            new_scores = self.score(candidate, val, f"step {state.step}: validation")
            point("step.validation")
            after = float(np.mean(new_scores))
            ok, why = self.accept(new_scores, state.val_scores, state.step)
            for name in dict.fromkeys(n for n, _ in changes):  # in order: checkpoints reproduce
                state.memory.append(UpdateRecord(
                    step=state.step, optimizer=name, accepted=ok, val_before=before,
                    val_after=after, changes=[t for n, t in changes if n == name]))
            if ok:
                state.spec, state.val_scores = candidate, new_scores
                if after > state.best_score:
                    state.best_spec, state.best_score = candidate, after
            event.update(decision="accepted" if ok else "rolled back", reason=why,
                         val_before=before, val_after=after,
                         proposed_spec=candidate.model_dump(mode="json"))
        self.pipeline.spec = state.spec
        event["seconds"] = round(time.perf_counter() - started, 3)
        event["llm_calls"] = {k: v - calls_before[k] for k, v in self._calls().items()}
        self._event(event)
        point("step.logged")  # logged, not yet checkpointed: resume must not log it twice
        self.log(f"step {state.step}: {event['decision']} (validation {event['val_before']:.3f}"
                 f" -> {event['val_after']:.3f}; {len(changes)} change(s))")

    def _optimizers_for(self, step: int) -> list[str]:
        names = list(self.config.optimizers)
        if self.config.schedule == "cycle":
            return [names[(step - 1) % len(names)]]
        return names

    # -- checkpoints --------------------------------------------------------------------------
    # state.json is the commit point of a step: the spec files are written first, the state last,
    # each atomically (temporary file, fsync, rename). Every step's state is also kept under
    # checkpoints/, so a state.json damaged on disk falls back to the newest good one.
    def save_state(self, state: TrainState) -> None:
        if self.run_dir is None:
            return
        state.spec.save(self.run_dir / "specs" / f"step-{state.step:04d}.json")
        state.best_spec.save(self.run_dir / "best_spec.json")
        state.spent = self.spent()
        text = state.model_dump_json(indent=1)
        atomic_write_text(self.run_dir / "checkpoints" / f"step-{state.step:04d}.json", text)
        atomic_write_text(self.run_dir / "state.json", text)
        point("checkpoint.saved")

    def load_state(self) -> TrainState | None:
        """The checkpoint: state.json, or if that is missing or damaged (torn, truncated, not a
        state) the newest readable file in checkpoints/. None when there is none at all."""
        if self.run_dir is None:
            return None
        main = self.run_dir / "state.json"
        candidates = [main] + sorted((self.run_dir / "checkpoints").glob("step-*.json"),
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
                self.log(f"checkpoint damaged ({'; '.join(problems)}); resuming from "
                         f"{path.relative_to(self.run_dir)} (step {state.step})")
            return state
        if problems:
            raise ConfigError(f"no readable checkpoint in {self.run_dir}: {'; '.join(problems)}",
                              "start a new run directory, or restore state.json") from None
        return None

    def _reconcile_events(self, state: TrainState | None) -> None:
        """Make the event log agree with the checkpoint before resuming: keep its readable
        records up to the checkpoint's step, each step once; drop torn lines and the events of
        a step that was logged but not checkpointed (it runs again)."""
        log = self.run_dir / "events.jsonl" if self.run_dir else None
        if log is None or not log.is_file():
            return
        done = state.step if state is not None else -1
        kept, seen = [], set()
        for record in read_jsonl(log):
            key = (record.get("event"), record.get("step", 0))
            known = key[0] in ("start", "step", "stopped")
            after = key[1] > done if key[0] != "start" else done < 0
            if not known or key in seen or after:
                continue
            seen.add(key)
            kept.append(record)
        rewrite_jsonl(log, kept)

    def _event(self, record: dict) -> None:
        if self.run_dir is not None:
            append_jsonl(self.run_dir / "events.jsonl", {"time": time.time(), **record})
