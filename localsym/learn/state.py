"""What a training run is configured with (``TrainConfig``) and what it has reached
(``TrainState``, the checkpoint: pool, memory, position in the data, what was spent)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from localsym.agent.spec import PipelineSpec
from localsym.learn.optim import DEFAULT_OPTIMIZERS, LLM_OPTIMIZERS, OptimizerName, UpdateRecord
from localsym.learn.search import PoolEntry
from localsym.learn.synth.limits import SynthLimits, Whole


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    epochs: Whole = Field(1, ge=1)
    batch_size: Whole = Field(4, ge=1)
    seed: Whole = Field(0, ge=0)
    min_gain: float = Field(0.0, ge=0.0, description="a candidate is accepted only if its mean "
                            "validation score beats its parent's by more than this (strict)")
    paired_test: Literal[True, False, "auto"] = Field(
        "auto", description="a gain must also pass a paired sign-flip test over the validation "
        "examples at level alpha: true always, auto where the split is large enough for a gain "
        "to pass it (2^-n < alpha), false never")
    alpha: float = Field(0.05, gt=0.0, lt=1.0, description="the chance that a change which does "
                         "nothing is accepted, spent over the gate's looks (half at each of two "
                         "when evidence > 0)")
    evidence: Whole = Field(32, ge=0, description="when a candidate gains on validation but "
                            "not yet significantly, score it and its parent on up to this many "
                            "training examples that took no part in proposing, picking or "
                            "screening it, and decide on all of it (0: one look, validation "
                            "alone)")
    optimizers: tuple[OptimizerName, ...] = DEFAULT_OPTIMIZERS
    schedule: Literal["all", "cycle"] = Field(
        "all", description="all: every LLM optimizer every step; cycle: one per step, in turn")
    max_steps: Whole | None = Field(None, ge=1)
    backprop: bool = Field(True, description="back-propagate language gradients node by node "
                           "(false: every node gets the final loss's feedback alone, no "
                           "gradient calls: the AutoPE-style ablation)")
    screen_size: Whole = Field(8, ge=1, description="training examples each candidate is screened "
                             "on (the parent's failures first)")
    max_candidates: Whole = Field(16, ge=1, description="candidates screened per step")
    patience: Whole | None = Field(2, ge=1, description="end training after this many steps in a "
                                 "row in which nothing was accepted and no candidate gained on "
                                 "validation at all (null: never end early)")
    screen_calls: Whole | None = Field(160, ge=1, description="model calls a step may spend "
                                     "screening its candidates (those not screened by then are "
                                     "screened out; null: no cap)")
    pick: Literal["cheapest", "best"] = Field(
        "cheapest", description="the agent a run ends with: among the pool's agents within one "
        "validation example of the best score, the cheapest per example (model calls, then "
        "tokens); or the best-scoring one")
    max_validate: Whole = Field(3, ge=1, description="candidates scored on the whole validation "
                              "split per step (the best of the screening)")
    demo_sizes: tuple[int, ...] = Field((2, 4), description="how many demonstrations a "
                                        "demonstration candidate shows")
    synthesis: SynthLimits = Field(SynthLimits(), description="the bounds of the search for "
                                   "programs (localsym.learn.synth)")
    tie_break: Literal["logprob", "none"] = Field(
        "logprob", description="on an equal validation score with no example lost, accept a "
        "candidate whose gold answers are likelier (needs a model with log-probabilities)")

    def differences(self, other: "TrainConfig") -> str:
        """The fields where ``other`` differs, as ``name: this -> other``."""
        return ", ".join(f"{k}: {v!r} -> {getattr(other, k)!r}" for k, v in self
                         if v != getattr(other, k))

    def paired_alpha(self, n: int) -> float | None:
        """The paired test's level at each look of a gate over ``n`` validation examples (alpha
        split over the two looks when ``evidence`` allows a second one); None where it does not
        apply (off, or auto and a split so small its smallest p-value, 2^-n, cannot reach it)."""
        level = self.alpha / 2 if self.evidence else self.alpha
        if self.paired_test is True or (self.paired_test == "auto" and 2.0 ** -n < level):
            return level
        return None

    def optimizers_for(self, step: int) -> list[str]:
        """The optimizers of a step: ``cycle`` takes the LLM optimizers one per step in turn;
        code-listed sources (demonstrations, structure, merge) run every step."""
        names: list[str] = list(self.optimizers)
        if self.schedule == "cycle":
            llm = [n for n in names if n in LLM_OPTIMIZERS]
            return [n for n in names if n not in LLM_OPTIMIZERS] + \
                ([llm[(step - 1) % len(llm)]] if llm else [])
        return names


STATE_FORMAT = 2  # 2: candidates and the optimizers' memory hold typed edits (1: lines of text)


class TrainState(BaseModel):
    """Everything needed to continue a run: the checkpoint."""

    format: Whole = Field(1, description="the checkpoint's format (STATE_FORMAT when written by "
                        "this version; 1 when written before edits were typed)")
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
    stale: int = 0  # steps in a row in which nothing was learned (see TrainConfig.patience)
    ended: str | None = None  # why training ended before its last step (patience), if it did
    # what shaped the run at its start (``Trainer.origin``): a resume must find the same; None
    # in a checkpoint written before it was kept
    origin: dict[str, str] | None = None
