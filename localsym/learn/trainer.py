"""The training loop: each step a search over candidate edits, gated on evidence.

A step runs in phases: **forward** the batch with the parent (drawn from the pool's Pareto
front), **loss** (the metric with the raw evidence where there is a ground truth, the judge
where there is none), **backward** (language gradients for the failing examples, last node to
first), **propose** (candidates from the LLM optimizers, the code-listed structural edits,
demonstration sets and merges; one atomic edit or one coherent group each), **screen** (each
candidate on a minibatch of training examples, the parent's failures first), **validate** (the
best few on the whole validation split) and **gate** (accepted only on a strict gain, or an
equal score with no example lost and a higher dense score; ``learn/search.py``). Accepted
candidates join the pool; the best spec so far is kept. After every step the state, pool
included, is checkpointed atomically to the run directory, and ``resume`` continues from it:
batches and parents come from seeded generators and every LLM call is deterministic (and
cached), so a resumed run ends with the same agent as an uninterrupted one.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from localsym.agent.pipeline import Pipeline
from localsym.agent.spec import PipelineSpec
from localsym.data import Example
from localsym.errors import ConfigError
from localsym.faults import point
from localsym.learn.backward import Backward
from localsym.learn.checkpoint import RunDirectory, check_resume, run_origin
from localsym.learn.edits import edit_text
from localsym.learn.evaluate import dense_score, evaluate_runs, forward_all, progress_bar
from localsym.learn.events import StartEvent, StepEvent, StoppedEvent, conversations_of
from localsym.learn.gate import TOL, Gate
from localsym.learn.loss import Loss, ScoredExample
from localsym.learn.optim import LLM_OPTIMIZERS, Optimizer, UpdateRecord
from localsym.learn.propose.proposer import Proposer
from localsym.learn.screen import Validation, screen
from localsym.learn.search import (Candidate, PoolEntry, best_index, decision, dense_rank,
                                   final_pick, minibatch, sample_parent, spec_key)
from localsym.learn.state import STATE_FORMAT, TrainConfig, TrainState
from localsym.lm.base import LM, SamplingParams
from localsym.metrics import Metric
from localsym.seeds import Salt, epoch_order, rng


class Trainer:
    """Train ``pipeline`` on examples. ``lm`` runs the loss, backward and the optimizers (it may
    be a larger model than the agent's own); ``metric`` scores validation when examples have
    expected outputs (else the loss's score is used). The phases are given (``loss``,
    ``backward``, ``proposer``; the last two default to the ones the config describes)."""

    def __init__(self, pipeline: Pipeline, loss: Loss, optimizers: dict[str, Optimizer],
                 lm: LM, config: TrainConfig | None = None, metric: Metric | None = None,
                 run_dir: str | Path | None = None, log=print,
                 meta_sampling: SamplingParams | None = None, progress: bool = False,
                 budget=None, backward: Backward | None = None,
                 proposer: Proposer | None = None):
        self.pipeline, self.loss, self.lm = pipeline, loss, lm
        self.progress = progress  # tqdm bars over forward passes and evaluations
        self.meta_sampling = meta_sampling  # of the backward calls (default META_PARAMS)
        self.config = config or TrainConfig()
        unknown = set(self.config.optimizers) & set(LLM_OPTIMIZERS) - set(optimizers)
        if unknown:
            raise ConfigError(f"config names optimizers {sorted(unknown)} that were not given",
                              f"given: {sorted(optimizers)}")
        self.optimizers, self.metric = optimizers, metric
        self.backward = backward or Backward(lm, meta_sampling, self.config.backprop)
        self.propose = proposer or Proposer(optimizers, self.config, pipeline.tools, metric)
        self.gate = Gate(self.config)
        self.dir = RunDirectory(run_dir) if run_dir else None  # checkpoints and events
        self.log = log
        self.budget = budget  # localsym.budget.Budget: checked between steps and candidates
        self._origin = self._usage()  # what this process had spent before training
        self._base: dict[str, float] = {}

    # -- scoring ------------------------------------------------------------------------------
    def bar(self, items, desc: str, total: int | None = None):
        return progress_bar(items, desc, self.progress, total)

    def score(self, spec: PipelineSpec, examples: list[Example], desc: str = "validation"
              ) -> list[float]:
        """Per-example scores of ``spec``."""
        return self.runs(spec, examples, desc)[0]

    def runs(self, spec: PipelineSpec, examples: list[Example], desc: str = "validation"
             ) -> tuple[list[float], list]:
        """Per-example scores of ``spec`` and its trajectories (see ``evaluate``)."""
        with self.bar(None, desc, len(examples)) as bar:
            return evaluate_runs(self.pipeline.using(spec), examples, self.metric, self.loss, bar)

    def dense(self, spec: PipelineSpec, examples: list[Example], trajectories: list
              ) -> float | None:
        """The tie-break's dense score (None when the config has none)."""
        if self.config.tie_break == "none":
            return None
        return dense_score(self.pipeline.lm, spec, examples, trajectories)

    # -- the loop -----------------------------------------------------------------------------
    def order(self, n: int, epoch: int) -> list[int]:
        return epoch_order(self.config.seed, epoch, n)

    def fit(self, train: list[Example], val: list[Example], resume: bool = False) -> TrainState:
        if not train or not val:
            raise ConfigError("training needs a non-empty train and validation split",
                              "give both splits at least one example")
        if self.config.paired_test == "auto" and self.config.paired_alpha(len(val)) is None:
            self.log(f"note: {len(val)} validation examples are too few for the paired test: "
                     "a gain is accepted without it")
        state = self._start(train, val, resume)
        self.pipeline.spec = state.spec
        cfg = self.config
        batches = (len(train) + cfg.batch_size - 1) // cfg.batch_size
        while not state.done:
            if self._last(state):
                state.done = True
                self.save_state(state)
                break
            if over := self._over():
                self._stop(state, over, f"stopped after step {state.step}")
                break
            order = self.order(len(train), state.epoch)
            batch = [train[i] for i in order[state.batch_index * cfg.batch_size:
                                             (state.batch_index + 1) * cfg.batch_size]]
            before = state.model_copy(deep=True)
            try:
                self._step(state, batch, train, val)
            except _BudgetSpent as cut:  # the step runs again on resume, from the cache
                state = before
                self._stop(state, str(cut), f"stopped during step {state.step + 1} (it runs "
                           "again on resume; its calls so far are cached)")
                break
            state.batch_index += 1
            if state.batch_index >= batches:
                state.epoch, state.batch_index = state.epoch + 1, 0
            if cfg.patience and state.stale >= cfg.patience and not self._last(state):
                self._end_early(state)
            self.save_state(state)
        self._pick(state)
        self.pipeline.spec = state.best_spec
        return state

    def _last(self, state: TrainState) -> bool:
        c = self.config
        return state.epoch >= c.epochs or bool(c.max_steps and state.step >= c.max_steps)

    def _end_early(self, state: TrainState) -> None:
        """Nothing was learned in ``patience`` steps in a row: training is over, and says why
        and what might help."""
        state.done = True
        best = max((e.mean for e in state.pool), default=0.0)
        state.ended = (f"validation is {best:.3f}, nothing left to gain on it (no gain in "
                       f"{state.stale} steps in a row); the test split says how well it holds"
                       if best >= 1.0 - TOL else
                       f"nothing learned in {state.stale} steps in a row (nothing accepted, no "
                       "candidate gained on validation at all): more training examples, a tool "
                       "the task needs, or a larger model (models.agent) might help; "
                       "train.patience sets how many steps to wait")
        self._event(StoppedEvent(step=state.step, reason=state.ended, spent=state.spent,
                                 kind="patience"))
        self.log(f"stopped early after step {state.step}: {state.ended}")

    def _pick(self, state: TrainState) -> None:
        """The agent the run ends with (``train.pick``, ``search.final_pick``)."""
        b, note = final_pick(state.pool, self.config.pick)
        if note:
            self.log(note)
        state.best_spec, state.best_score = state.pool[b].spec, state.pool[b].mean

    def _start(self, train: list[Example], val: list[Example], resume: bool) -> TrainState:
        """The state a run starts from: its checkpoint on ``resume`` (refused if written with
        another config), else the agent as given, scored on ``val``."""
        state = self.load_state() if resume else None
        origin = self.origin(train, val)
        if state is not None:  # refused before any rewrite
            self._check_resume(state, origin)
        if resume and self.dir is not None:
            self.dir.reconcile_events(state)
        if state is not None:
            self._base = dict(state.spent)
            state.stopped = None  # resumed: perhaps with a larger budget
            self.save_state(state)  # rewrites a damaged state.json from the checkpoint used
            return state
        spec = self.pipeline.spec
        scores, runs = self.runs(spec, val)
        start = PoolEntry(spec=spec, scores=scores, calls=float(np.mean([t.calls for t in runs])),
                          tokens=float(np.mean([t.tokens for t in runs])),
                          seconds=round(float(np.mean([t.seconds for t in runs])), 4))
        state = TrainState(format=STATE_FORMAT, config=self.config, spec=spec, val_scores=scores,
                           best_spec=spec, best_score=float(np.mean(scores)), pool=[start],
                           tried=[spec_key(spec)], origin=origin)
        self._event(StartEvent(val_score=state.best_score))
        self.save_state(state)
        return state

    def origin(self, train: list[Example], val: list[Example]) -> dict[str, str]:
        """What shapes this run besides its config (kept in the checkpoint)."""
        return run_origin(spec_key(self.pipeline.spec), train, val, self.pipeline.params)

    def _check_resume(self, state: TrainState, origin: dict[str, str]) -> None:
        check_resume(state, self.config, origin, self.dir.run_dir if self.dir is not None
                     else "the run directory")

    def _count(self, counter: str) -> int:
        """A counter summed over both LMs (the same LM counted once)."""
        lms = {id(lm): lm for lm in (self.pipeline.lm, self.lm)}.values()
        return sum(int(lm.usage().get(counter, 0)) for lm in lms)

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

    def _step(self, state: TrainState, batch: list[Example], train: list[Example],
              val: list[Example]) -> None:
        """One step, in phases: forward and loss, backward, propose, screen, validate and gate,
        commit, log (the checkpoint is the caller's)."""
        started, calls_before = time.perf_counter(), self._calls()
        state.step += 1
        cfg, step = self.config, state.step
        draw = rng(cfg.seed, Salt.PARENT, step)
        parent_id = sample_parent(state.pool, draw)
        parent = state.pool[parent_id]
        spec = parent.spec
        # forward and loss; backward: gradients for the failing examples only
        scored, failures = self._forward_loss(state, spec, batch)
        llm: list[str] = [n for n in cfg.optimizers_for(step) if n in LLM_OPTIMIZERS]
        failing = [s for s in scored if s.loss.score < 1.0]
        grads, lost = self.backward(failing, spec, "pipeline" in llm) if llm else ([], [])
        point("step.backward")
        # propose, from a minibatch favouring the parent's failures
        by_id = {ex.id: ex for ex in train}
        mb_ids = minibatch([ex.id for ex in train], [s.example.id for s in failing],
                           cfg.screen_size, draw)
        mb = [by_id[i] for i in mb_ids]
        parent_mb, parent_runs = self.runs(spec, mb, f"step {step}: screen parent")
        successes = [s.trajectory for s in scored if s.loss.score >= 1.0] + \
            [t for t, sc in zip(parent_runs, parent_mb) if sc >= 1.0]
        known = {s.example.id: s.loss.score for s in scored} | dict(zip(mb_ids, parent_mb))
        proposed = self.propose(spec, step, llm, grads, failing, train, successes, state.memory,
                                state.tried, known, unlabeled=[ex.inputs for ex in val])
        # screen, validate and gate, commit
        base = float(np.mean(parent_mb))
        candidates = proposed.candidates
        chosen = screen(self, candidates, mb, base, step, cfg.max_validate,
                        (spec, state.tried) if "merge" in cfg.optimizers else None,
                        cfg.screen_calls)
        point("step.update")
        validate = Validation(self, self.gate, val, train, cfg.evidence, cfg.seed)
        accepted = validate(chosen, parent, step, {ex.id for ex in batch} | set(mb_ids),
                            lambda c, scores: state.pool.append(PoolEntry.of(
                                c, scores, parent_id, step)))
        point("step.validation")
        top = self._commit(state, parent, candidates, accepted)
        learned = bool(accepted) or any(c.val is not None and c.val > parent.mean + TOL
                                        for c in candidates)
        state.stale = 0 if learned else state.stale + 1
        self._log_step(StepEvent(
            step=step, epoch=state.epoch, batch=[ex.id for ex in batch], parent=parent_id,
            losses=[s.loss for s in scored], gradients=grads,
            failures=failures + lost + proposed.failures, conversations=conversations_of(scored),
            minibatch=mb_ids, parent_minibatch=base, candidates=[c.summary() for c in candidates],
            changes=[f"{c.source}: {edit_text(e)}" for c in accepted for e in c.edits],
            rejected_edits=proposed.rejected, val_before=parent.mean,
            **decision(candidates, accepted, top, parent.mean)._asdict(),
            seconds=round(time.perf_counter() - started, 3),
            llm_calls={k: v - calls_before[k] for k, v in self._calls().items()},
            synthesis=proposed.synthesis.model_dump() if proposed.synthesis else None),
            f"{len(candidates)} candidate(s), {sum(c.val is not None for c in candidates)} "
            f"validated, {len(accepted)} accepted")

    def _commit(self, state: TrainState, parent: PoolEntry, candidates: list[Candidate],
                accepted: list[Candidate]) -> Candidate | None:
        """Credit every scored candidate in the optimizers' memory (an LLM optimizer's even when
        screened out); the best accepted one becomes the current agent; the best of the pool is
        kept. Returns that accepted candidate."""
        for c in candidates:
            if c.minibatch is not None and (c.decision != "screened out" or
                                            c.source in LLM_OPTIMIZERS):
                state.memory.append(UpdateRecord(
                    step=state.step, optimizer=c.source, accepted=c.decision == "accepted",
                    val_before=parent.mean, edits=c.edits,
                    val_after=c.val if c.val is not None else c.minibatch))
        top = max(accepted, key=lambda c: (c.val, dense_rank(c.dense))) if accepted else None
        if top is not None:
            state.spec = top.spec
            state.val_scores = next(e.scores for e in state.pool if e.spec == top.spec)
        b = best_index(state.pool)
        state.best_spec, state.best_score = state.pool[b].spec, state.pool[b].mean
        self.pipeline.spec = state.spec
        return top

    def _log_step(self, event: StepEvent, counts: str) -> None:
        self._event(event)
        point("step.logged")  # logged, not yet checkpointed: resume must not log it twice
        self.log(f"step {event.step}: {event.decision} (validation {event.val_before:.3f}"
                 f" -> {event.val_after:.3f}; {counts})")

    def _forward_loss(self, state: TrainState, spec: PipelineSpec, batch: list[Example]
                      ) -> tuple[list[ScoredExample], list[str]]:
        """Each example whose loss could be computed, and why the others could not (a meta call
        that fails costs its example only)."""
        with self.bar(None, f"step {state.step}: forward", len(batch)) as bar:
            trajectories = forward_all(self.pipeline.using(spec), batch, bar)
        point("step.forward")
        failures: list[str] = []
        scored = []
        losses = self.loss.batch(list(zip(trajectories, batch)))
        for traj, ex, loss in zip(trajectories, batch, losses):
            if isinstance(loss, Exception):
                cause = getattr(loss, "cause", loss)
                failures.append(f"example {ex.id}: {type(loss).__name__}: {cause}")
            else:
                scored.append(ScoredExample(traj, ex, loss))
        return scored, failures

    def _over(self) -> str | None:  # why the run's budget is spent, or None
        return self.budget.exceeded(self.spent()) if self.budget is not None else None

    def check_budget(self) -> None:
        """Inside a step, before each candidate is scored: end the step if the budget is spent."""
        if over := self._over():
            raise _BudgetSpent(over)

    def _stop(self, state: TrainState, over: str, what: str) -> None:
        state.stopped = over
        self.save_state(state)
        self._event(StoppedEvent(step=state.step, reason=over, spent=state.spent))
        self.log(f"{what}: {over}")

    # -- the run directory (nothing is written without one) -----------------------------------
    def save_state(self, state: TrainState) -> None:
        if self.dir is not None:
            self.dir.save_state(state, self.spent())

    def load_state(self) -> TrainState | None:
        return self.dir.load_state(self.log) if self.dir is not None else None

    def _event(self, event: StartEvent | StepEvent | StoppedEvent) -> None:
        if self.dir is not None:
            self.dir.event(event)


class _BudgetSpent(Exception):
    """The budget ran out inside a step: it is dropped, and a resume runs it again."""
