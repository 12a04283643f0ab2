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
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from localsym.agent.pipeline import Pipeline
from localsym.agent.spec import PipelineSpec
from localsym.data import Example
from localsym.metrics import Metric, score
from localsym.errors import CallFailure, ConfigError
from localsym.faults import point
from localsym.files import append_jsonl, atomic_write_text, read_jsonl, rewrite_jsonl
from localsym.learn import edits as listed
from localsym.learn.backward import backward_batch, loss_as_gradients
from localsym.learn.loss import Loss
from localsym.learn.optim import (LISTED_SOURCES, LLM_OPTIMIZERS, Batch, Optimizer, OptimizerName,
                                  UpdateRecord)
from localsym.learn.search import (Candidate, PoolEntry, best_index, dense_rank, dense_target,
                                   gate, minibatch, sample_parent, spec_key)
from localsym.lm.base import LM, SamplingParams



class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(4, ge=1)
    seed: int = Field(0, ge=0)
    min_gain: float = Field(0.0, ge=0.0, description="a candidate is accepted only if its mean "
                            "validation score beats its parent's by more than this (strict)")
    paired_test: bool = False
    alpha: float = Field(0.1, gt=0.0, lt=1.0)
    optimizers: tuple[OptimizerName, ...] = LLM_OPTIMIZERS + LISTED_SOURCES
    schedule: Literal["all", "cycle"] = Field(
        "all", description="all: every LLM optimizer every step; cycle: one per step, in turn")
    max_steps: int | None = Field(None, ge=1)
    backprop: bool = Field(True, description="back-propagate language gradients node by node "
                           "(false: every node gets the final loss's feedback alone, no "
                           "gradient calls: the AutoPE-style ablation)")
    screen_size: int = Field(8, ge=1, description="training examples each candidate is screened "
                             "on (the parent's failures first)")
    max_candidates: int = Field(16, ge=1, description="candidates screened per step")
    max_validate: int = Field(3, ge=1, description="candidates scored on the whole validation "
                              "split per step (the best of the screening)")
    demo_sizes: tuple[int, ...] = Field((2, 4), description="how many demonstrations a "
                                        "demonstration candidate shows")
    tie_break: Literal["logprob", "none"] = Field(
        "logprob", description="on an equal validation score with no example lost, accept a "
        "candidate whose gold answers are likelier (needs a model with log-probabilities)")


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
    pool: list[PoolEntry] = []  # every accepted agent with its validation scores
    tried: list[str] = []  # keys of the specs already screened (never screened twice)
    done: bool = False
    spent: dict[str, float] = {}  # LLM calls made, their tokens, wall seconds: over all segments
    stopped: str | None = None  # why the run stopped before its end (a budget)


def progress_bar(items, desc: str, enabled: bool = True, total: int | None = None):
    """A tqdm bar over ``items``, or (items None) one advanced by hand up to ``total``."""
    from tqdm import tqdm

    return tqdm(items, desc=desc, leave=False, disable=not enabled, unit="ex", dynamic_ncols=True,
                total=total)


def forward_all(pipeline: Pipeline, examples: list[Example], bar=None) -> list:
    """Trajectories of ``examples`` in order, their LM calls batched (``Pipeline.forward_batch``)."""
    if bar is not None:
        bar.reset(total=len(examples) * max(1, len(pipeline.spec.nodes)))
        bar.unit = "call"
    return pipeline.forward_batch([ex.inputs for ex in examples],
                                  progress=bar.update if bar is not None else None)


def evaluate(pipeline: Pipeline, examples: list[Example], metric: Metric | None, loss: Loss,
             bar=None) -> list[float]:
    """Run ``pipeline`` on each example and score it: the metric where the example has a ground
    truth, else the loss's score (the judge). A run that failed scores 0 under the metric. The
    examples' LM calls are batched; scores keep the examples' order."""
    return evaluate_runs(pipeline, examples, metric, loss, bar)[0]


def evaluate_runs(pipeline: Pipeline, examples: list[Example], metric: Metric | None, loss: Loss,
                  bar=None) -> tuple[list[float], list]:
    """``evaluate``, and the trajectories it scored."""
    examples = list(examples)
    trajectories = forward_all(pipeline, examples, bar)

    out: list = [None] * len(examples)
    judged = []
    for i, (traj, ex) in enumerate(zip(trajectories, examples)):
        if metric is not None and ex.expected is not None:
            out[i] = 0.0 if not traj.ok else score(metric, traj.outputs, ex.expected).score
        else:
            judged.append(i)
    for i, record in zip(judged, loss.batch([(trajectories[i], examples[i]) for i in judged])):
        if isinstance(record, Exception):
            raise record
        out[i] = record.score
    if bar is not None and out:
        bar.set_postfix(score=f"{np.mean(out):.3f}")
    return out, trajectories


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
        unknown = set(self.config.optimizers) & set(LLM_OPTIMIZERS) - set(optimizers)
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
        return self.runs(spec, examples, desc)[0]

    def runs(self, spec: PipelineSpec, examples: list[Example], desc: str = "validation"
             ) -> tuple[list[float], list]:
        """Per-example scores of ``spec`` and its trajectories."""
        saved = self.pipeline.spec
        self.pipeline.spec = spec
        try:
            with self.bar(None, desc, len(examples)) as bar:
                return evaluate_runs(self.pipeline, examples, self.metric, self.loss, bar)
        finally:
            self.pipeline.spec = saved

    def dense(self, spec: PipelineSpec, examples: list[Example], trajectories: list) -> float | None:
        """Mean per-token log-probability of the gold answers under the final node's prompt of
        each run (the answer in the format that node gives), or None where it does not apply:
        no ground truth, an answer bound to a tool, a model without log-probabilities."""
        if self.config.tie_break == "none":
            return None
        total = []
        for ex, traj in zip(examples, trajectories):
            target = dense_target(spec, ex.expected) if ex.expected else None
            if target is None or not traj.records:
                return None
            try:
                lp, n = self.pipeline.lm.logprob(traj.records[-1].messages, target)
            except NotImplementedError:
                return None
            except CallFailure:
                lp, n = -50.0, 1
            total.append(lp / max(n, 1))
        return round(float(np.mean(total)), 6) if total else None

    def accept(self, new: list[float], old: list[float], step: int,
               dense_new: float | None = None, dense_old: float | None = None
               ) -> tuple[bool, str]:
        ok, why = gate(new, old, self.config.min_gain, dense_new, dense_old)
        if ok and self.config.paired_test:
            p = permutation_p_value(new, old, seed=self.config.seed + step)
            if p >= self.config.alpha:
                return False, f"no significant gain (paired test p={p:.3f} >= {self.config.alpha})"
            return True, f"{why}, p={p:.3f}"
        return ok, why

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
                               best_score=float(np.mean(scores)),
                               pool=[PoolEntry(spec=spec, scores=scores)],
                               tried=[spec_key(spec)])
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
            self._step(state, batch, train, val)
            state.batch_index += 1
            if state.batch_index >= batches:
                state.epoch, state.batch_index = state.epoch + 1, 0
            self.save_state(state)
        self.pipeline.spec = state.best_spec
        return state

    def _count(self, counter: str) -> int:
        """A counter summed over both LMs (the same LM counted once)."""
        lms = {id(lm): lm for lm in (self.pipeline.lm, self.lm)}.values()
        return sum(lm.usage().get(counter, 0) for lm in lms)

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
        started = time.perf_counter()
        calls_before = self._calls()
        state.step += 1
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, 7, state.step])
        parent_id = sample_parent(state.pool, rng)
        parent = state.pool[parent_id]
        spec = parent.spec
        self.pipeline.spec = spec
        # forward and loss
        with self.bar(None, f"step {state.step}: forward", len(batch)) as bar:
            trajectories = forward_all(self.pipeline, batch, bar)
        point("step.forward")
        failures: list[str] = []
        scored = []  # (trajectory, example, loss) of every example whose loss could be computed
        for traj, ex, loss in zip(trajectories, batch, self.loss.batch(list(zip(trajectories,
                                                                                 batch)))):
            if isinstance(loss, Exception):  # a meta call that fails costs its example only
                failures.append(f"example {ex.id}: {type(loss).__name__}: {loss.cause}")
            else:
                scored.append((traj, ex, loss))
        # backward: gradients for the failing examples only (a success has nothing to correct)
        llm = [n for n in self._optimizers_for(state.step) if n in LLM_OPTIMIZERS]
        failing = [(t, ex, l) for t, ex, l in scored if l.score < 1.0]
        grads = self._backward(failing, spec, "pipeline" in llm, failures) if llm else []
        point("step.backward")
        # propose
        successes = [t for t, _, l in scored if l.score >= 1.0]
        by_id = {ex.id: ex for ex in train}
        mb_ids = minibatch([ex.id for ex in train], [ex.id for _, ex, _ in failing],
                           cfg.screen_size, rng)
        mb = [by_id[i] for i in mb_ids]
        parent_mb, parent_runs = self.runs(spec, mb, f"step {state.step}: screen parent")
        successes += [t for t, sc in zip(parent_runs, parent_mb) if sc >= 1.0]
        candidates, rejected = self._propose(state, spec, llm, grads, failing, train, successes,
                                             failures)
        # screen on the minibatch; the best few go on to validation
        base = float(np.mean(parent_mb))
        eligible = [c for c in candidates if self._screen(c, mb, base, state.step)]
        point("step.update")
        merged = self._merge(spec, eligible, state)
        if merged is not None:
            candidates.append(merged)
            if self._screen(merged, mb, base, state.step):
                eligible.append(merged)
        eligible.sort(key=lambda c: -c.minibatch)  # stable: ties keep the proposal order
        for c in eligible[cfg.max_validate:]:
            c.decision, c.reason = "screened out", f"not among the {cfg.max_validate} best " \
                                                   "on the minibatch"
        accepted = self._validate(state, parent_id, eligible[:cfg.max_validate], val)
        point("step.validation")
        for c in candidates:
            if c.decision != "screened out" or c.source in LLM_OPTIMIZERS:
                state.memory.append(UpdateRecord(
                    step=state.step, optimizer=c.source, accepted=c.decision == "accepted",
                    val_before=parent.mean,
                    val_after=c.val if c.val is not None else c.minibatch, changes=c.edits))
        if accepted:
            top = max(accepted, key=lambda c: (c.val, dense_rank(c.dense)))
            state.spec = top.spec
            state.val_scores = next(e.scores for e in state.pool if e.spec == top.spec)
        b = best_index(state.pool)
        state.best_spec, state.best_score = state.pool[b].spec, state.pool[b].mean
        validated = [c for c in candidates if c.val is not None]
        event = {"event": "step", "step": state.step, "epoch": state.epoch,
                 "batch": [ex.id for ex in batch], "parent": parent_id,
                 "losses": [l.model_dump() for _, _, l in scored],
                 "gradients": [g.model_dump() for g in grads], "failures": failures,
                 "minibatch": mb_ids, "parent_minibatch": base,
                 "candidates": [c.summary() for c in candidates],
                 "changes": [f"{c.source}: {e}" for c in accepted for e in c.edits],
                 "rejected_edits": rejected, "val_before": parent.mean,
                 "val_after": max((c.val for c in validated), default=parent.mean)}
        if accepted:
            event.update(decision="accepted", reason="; ".join(c.reason for c in accepted),
                         proposed_spec=top.spec.model_dump(mode="json"), val_after=top.val)
        elif validated:
            event.update(decision="rolled back", reason=validated[0].reason,
                         proposed_spec=validated[0].spec.model_dump(mode="json"))
        else:
            event.update(decision="no change", reason="no candidate beat the parent on the "
                                                      "minibatch" if candidates else
                         "no candidate proposed")
        self.pipeline.spec = state.spec
        event["seconds"] = round(time.perf_counter() - started, 3)
        event["llm_calls"] = {k: v - calls_before[k] for k, v in self._calls().items()}
        self._event(event)
        point("step.logged")  # logged, not yet checkpointed: resume must not log it twice
        self.log(f"step {state.step}: {event['decision']} (validation {event['val_before']:.3f}"
                 f" -> {event['val_after']:.3f}; {len(candidates)} candidate(s), "
                 f"{len(validated)} validated, {len(accepted)} accepted)")

    def _backward(self, failing: list, spec: PipelineSpec, workflow: bool,
                  failures: list[str]) -> list:
        if not failing:
            return []
        if self.config.backprop:
            results = backward_batch([t for t, _, _ in failing], [l for _, _, l in failing],
                                     spec, self.lm, [ex.id for _, ex, _ in failing],
                                     params=self.meta_params, workflow=workflow,
                                     contain=True)
        else:
            results = [loss_as_gradients(t, l, ex.id) for t, ex, l in failing]
        grads = []
        for (_, ex, _), result in zip(failing, results):
            if isinstance(result, Exception):
                failures.append(f"example {ex.id}: {type(result).__name__}: {result.cause}")
            else:
                grads.append(result)
        return grads

    def _propose(self, state: TrainState, spec: PipelineSpec, llm: list[str], grads: list,
                 failing: list, train: list[Example], successes: list, failures: list[str]
                 ) -> tuple[list[Candidate], list[str]]:
        """Every candidate of this step, in a fixed order (LLM optimizers, demonstrations,
        structural edits), each a child of ``spec``; the ones that change the final outputs
        or were tried before are left out."""
        cfg, rejected = self.config, []
        proposed: list[Candidate] = []
        if grads:
            ok_ids = {g.example_id for g in grads}
            data = Batch(trajectories=[t for t, ex, _ in failing if ex.id in ok_ids],
                         gradients=grads)
            for name in llm:
                try:
                    proposal = self.optimizers[name].step(spec, data, state.memory)
                except CallFailure as err:
                    failures.append(f"optimizer {name}: {type(err).__name__}: {err.cause}")
                    continue
                rejected += [f"{name}: {r}" for r in proposal.rejected]
                if proposal.changes:
                    proposed.append(Candidate(source=name, spec=proposal.spec,
                                              edits=[c.target for c in proposal.changes]))
        if "demonstrations" in cfg.optimizers:
            seed = cfg.seed * 1000 + state.step
            for edits, new in listed.labeled_demonstrations(spec, train, cfg.demo_sizes, seed) + \
                    listed.bootstrapped_demonstrations(spec, successes, cfg.demo_sizes, seed):
                proposed.append(Candidate(source="demonstrations", edits=edits, spec=new))
        if "structure" in cfg.optimizers:
            for edits, new in listed.structural_edits(spec, self.pipeline.tools):
                proposed.append(Candidate(source="structure", edits=edits, spec=new))
        finals, tried, out = spec.final_outputs(), set(state.tried), []
        for c in proposed:
            key = spec_key(c.spec)
            if c.spec.final_outputs() != finals:
                rejected.append(f"{c.source}: {'; '.join(c.edits)}: changes the final outputs "
                                f"{finals} -> {c.spec.final_outputs()}")
            elif key not in tried and len(out) < cfg.max_candidates:
                tried.add(key)
                state.tried.append(key)
                out.append(c)
        return out, rejected

    def _screen(self, c: Candidate, mb: list[Example], base: float, step: int) -> bool:
        """Score ``c`` on the minibatch; whether it beats the parent there (strictly)."""
        c.minibatch = float(np.mean(self.score(c.spec, mb, f"step {step}: screen {c.source}")))
        if c.minibatch > base + 1e-12:
            return True
        c.decision, c.reason = "screened out", f"minibatch {c.minibatch:.3f} <= parent {base:.3f}"
        return False

    def _merge(self, spec: PipelineSpec, eligible: list[Candidate], state: TrainState
               ) -> Candidate | None:
        """The two best screened candidates from different sources, together."""
        if "merge" not in self.config.optimizers:
            return None
        ranked = sorted(eligible, key=lambda c: -c.minibatch)
        for i, a in enumerate(ranked):
            for b in ranked[i + 1:]:
                if a.source == b.source:
                    continue
                new = listed.merge(spec, a.spec, b.spec)
                if new is not None and spec_key(new) not in state.tried:
                    state.tried.append(spec_key(new))
                    return Candidate(source="merge", spec=new, edits=a.edits + b.edits)
        return None

    def _validate(self, state: TrainState, parent_id: int, chosen: list[Candidate],
                  val: list[Example]) -> list[Candidate]:
        """Score ``chosen`` on the validation split and gate each against the parent; the
        accepted ones join the pool."""
        parent, accepted = state.pool[parent_id], []
        for c in chosen:
            scores, runs = self.runs(c.spec, val, f"step {state.step}: validation")
            c.val = float(np.mean(scores))
            tie = abs(c.val - parent.mean) <= 1e-12 and \
                all(a >= b for a, b in zip(scores, parent.scores))
            if tie and parent.dense is None:
                parent.dense = self.dense(parent.spec, val, self.runs(parent.spec, val)[1])
            if tie:
                c.dense = self.dense(c.spec, val, runs)
            ok, c.reason = self.accept(scores, parent.scores, state.step, c.dense, parent.dense)
            c.decision = "accepted" if ok else "rejected"
            if ok:
                state.pool.append(PoolEntry(spec=c.spec, scores=scores, dense=c.dense,
                                            parent=parent_id, step=state.step, source=c.source))
                accepted.append(c)
        return accepted

    def _optimizers_for(self, step: int) -> list[str]:
        """The optimizers of a step: ``cycle`` takes the LLM optimizers one per step in turn;
        code-listed sources (demonstrations, structure, merge) run every step."""
        names = list(self.config.optimizers)
        if self.config.schedule == "cycle":
            llm = [n for n in names if n in LLM_OPTIMIZERS]
            return [n for n in names if n not in LLM_OPTIMIZERS] + \
                ([llm[(step - 1) % len(llm)]] if llm else [])
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
