"""Cost-aware learning on scripted models: patience ends a run that learns nothing, screening
races candidates and stops spending where none can win, a tie keeps the cheaper agent, and the
pool's (score, cost) front and the final pick."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from conftest import RoutedLM, run_events
from localsym.agent import Pipeline, PipelineSpec
from localsym.data import Example
from localsym.learn import MetricLoss, TrainConfig, Trainer
from localsym.learn.edits import SetPrompt, SetVote
from localsym.learn.optim import Proposal
from localsym.learn.screen import screen
from localsym.learn.search import (Candidate, PoolEntry, cheapest_near_best, cost_front,
                                   front_points)
from localsym.metrics import numeric_match

ARITH = {"name": "arith", "description": "Multiply.", "inputs": [{"name": "question"}],
         "nodes": [{"name": "solve", "inputs": ["question"],
                    "outputs": [{"name": "answer", "type": "int"}]}]}


def _examples(prefix: str, n: int) -> list[Example]:
    return [Example(id=f"{prefix}{i}", inputs={"question": f"{prefix}{i}"},
                    expected={"answer": 36}) for i in range(n)]


class EditsOptimizer:
    """Proposes one candidate: the parent plus ``edits``."""

    name = "prompt"

    def __init__(self, *edits):
        self.edits = edits

    def step(self, spec, batch, memory):
        proposal = Proposal(spec=spec)
        for e in self.edits:
            proposal.add(e)
        return proposal


def _fit(tmp_path, lm, spec, optimizer, train, val, log=lambda *_: None, **config):
    cfg = {"optimizers": ("prompt",), "batch_size": 2, "max_steps": 5, "tie_break": "none",
           "backprop": False, **config}
    trainer = Trainer(Pipeline(spec, lm), MetricLoss(numeric_match), {"prompt": optimizer}, lm,
                      TrainConfig(**cfg), metric=numeric_match, run_dir=tmp_path, log=log)
    return trainer.fit(train, val)


def test_a_run_that_learns_nothing_ends_after_patience_and_says_what_might_help(tmp_path):
    lm = RoutedLM({"solve_output": lambda m: {"answer": 1}})  # always wrong, whatever the prompt
    lines: list[str] = []
    data = _examples("e", 8)
    state = _fit(tmp_path, lm, PipelineSpec.from_data(ARITH), EditsOptimizer(
        SetPrompt(node="solve", field="task", text="Try harder.")), data, data,
        log=lines.append, max_steps=6, epochs=2, patience=2)
    assert state.done and state.step == 2  # of 6
    assert "nothing learned in 2 steps in a row" in state.ended and "a tool" in state.ended
    assert any(line.startswith("stopped early after step 2") for line in lines)
    stopped = run_events(tmp_path, "stopped")
    assert len(stopped) == 1 and stopped[0]["kind"] == "patience"
    # without patience the same run spends all six steps
    again = _fit(tmp_path / "all", lm, PipelineSpec.from_data(ARITH), EditsOptimizer(
        SetPrompt(node="solve", field="task", text="Try harder.")), data, data,
        max_steps=6, epochs=2, patience=None)
    assert again.step == 6 and again.ended is None
    # a run whose last step is the patience-th says nothing of ending early: it simply ended
    last = _fit(tmp_path / "last", lm, PipelineSpec.from_data(ARITH), EditsOptimizer(
        SetPrompt(node="solve", field="task", text="Try harder.")), data, data,
        max_steps=2, patience=2)
    assert last.step == 2 and last.ended is None


def test_a_tie_on_validation_keeps_the_cheaper_agent(tmp_path):
    """The parent votes over 3 runs (3 calls per example); the candidate drops the vote and
    helps on the minibatch only: on validation the two tie, and the gate keeps the cheaper."""
    train, val = _examples("t", 4), _examples("v", 4)

    def solve(messages):
        text = " ".join(m["content"] for m in messages)
        right = "v0" in text or "v1" in text or (
            "MARK" in text and any(f"t{i}" in text for i in range(4)))
        return {"answer": 36 if right else 1}
    lm = RoutedLM({"solve_output": solve})
    spec = PipelineSpec.from_data({**ARITH, "nodes": [{**ARITH["nodes"][0],
                                                       "vote": {"samples": 3}}]})
    state = _fit(tmp_path, lm, spec, EditsOptimizer(
        SetPrompt(node="solve", field="task", text="MARK"), SetVote(node="solve", vote=None)),
        train, val, max_steps=1, patience=None)
    (step,) = run_events(tmp_path, "step")
    (cand,) = step["candidates"]
    assert cand["minibatch"] == 1.0 and cand["val"] == 0.5  # the parent's 0.5: a tie
    assert cand["decision"] == "accepted" and "fewer model calls" in cand["reason"]
    assert state.best_spec.node("solve").vote is None and state.pool[1].calls == 1.0
    assert state.pool[0].calls == 3.0


def _entry(spec, scores, calls, tokens, step=0):
    return PoolEntry(spec=spec, scores=scores, calls=calls, tokens=tokens, step=step)


def test_the_pick_and_the_front_weigh_score_against_cost():
    s = PipelineSpec.from_data(ARITH)
    pool = [_entry(s, [0, 0, 0, 0], 1.0, 100.0),         # cheap, poor
            _entry(s, [1, 1, 1, 0], 1.0, 120.0, 1),      # cheap, one example below the best
            _entry(s, [1, 1, 1, 1], 3.0, 400.0, 2),      # the best score, three times the calls
            _entry(s, [1, 1, 0, 0], 2.0, 300.0, 3)]      # dominated by the second
    assert cheapest_near_best(pool) == 1
    assert cost_front(pool) == [0, 1, 2]
    assert [(p.step, p.val, p.calls) for p in front_points(pool)] == \
        [(0, 0.0, 1.0), (1, 0.75, 1.0), (2, 1.0, 3.0)]
    # two examples below the best is not within noise: the best is kept
    pool[1] = _entry(s, [1, 1, 0, 0], 1.0, 120.0, 1)
    assert cheapest_near_best(pool) == 2
    # an unmeasured cost counts as the dearest
    pool[1] = PoolEntry(spec=s, scores=[1, 1, 1, 0])
    assert cheapest_near_best(pool) == 2 and 1 not in cost_front(pool)


class TableScorer:
    """Scores by the candidate's prompt text from a table; counts the examples scored."""

    def __init__(self, table: dict[str, list[float]]):
        self.table, self.scored = table, {k: 0 for k in table}

    def runs(self, spec, examples, desc):
        task = spec.node("solve").prompt.task
        ids = [int(ex.id[1:]) for ex in examples]
        self.scored[task] += len(ids)

        class Run:
            calls, tokens, seconds = 1, 10, 0.0
        return [self.table[task][i] for i in ids], [Run() for _ in ids]

    def dense(self, spec, examples, trajectories):
        return None

    def check_budget(self):
        pass


def test_screening_races_and_stops_spending_where_no_candidate_can_win(caplog):
    s = PipelineSpec.from_data(ARITH)
    mb = _examples("m", 4)
    table = {"hopeless": [0, 0, 1, 1], "good": [1, 1, 1, 0], "better": [1, 1, 1, 1],
             "late": [1, 0, 1, 1]}
    scorer = TableScorer(table)
    cands = [Candidate.of(s, "prompt", [SetPrompt(node="solve", field="task", text=t)])
             for t in table]
    with caplog.at_level(logging.INFO):
        chosen = screen(scorer, cands, mb, base=0.5, step=1, keep=1)
    assert [c.text() for c in chosen] == [cands[2].text()]
    # 0 of 2 on the first half: even full marks after cannot beat the parent's 0.5
    assert scorer.scored["hopeless"] == 2 and "cannot beat the parent" in cands[0].reason
    # scored whole: they could still win when their first half was in
    assert scorer.scored["good"] == 4 and scorer.scored["better"] == 4
    # 1 of 2 first: at most 0.75, below the 1.0 already kept (keep=1)
    assert scorer.scored["late"] == 2 and "the 1 best so far" in cands[3].reason
    # the decisions are those of scoring everything
    full = {t: float(np.mean(v)) for t, v in table.items()}
    assert max(full, key=full.get) == "better"


def test_a_steps_screening_budget_screens_out_the_rest_with_the_reason():
    s = PipelineSpec.from_data(ARITH)
    table = {"a": [0, 1, 1, 1], "b": [1, 1, 1, 1], "c": [1, 1, 1, 1]}
    scorer = TableScorer(table)
    cands = [Candidate.of(s, "prompt", [SetPrompt(node="solve", field="task", text=t)])
             for t in table]
    chosen = screen(scorer, cands, _examples("m", 4), base=0.5, step=1, keep=3, max_calls=6)
    assert [c.text() for c in chosen] == [cands[1].text(), cands[0].text()]
    assert scorer.scored["c"] == 0 and "screening budget (6 model calls)" in cands[2].reason


def test_every_meta_schema_compiles_to_a_small_index():
    """The size of a compiled index grows with the counted repeats its regex unrolls into; the
    tool optimizer's once unrolled 1,037 (a 370 MB index, the peak of a training run's
    memory). Each meta schema of a spec with tools stays far below that."""
    from localsym.learn.optim.tool import ToolOptimizer
    from localsym.learn.optim.workflow import PipelineOptimizer
    from localsym.lm.schema_index import repeat_states, schema_regex

    from pathlib import Path

    spec = PipelineSpec.load(Path(__file__).parent.parent / "examples" / "arithmetic" /
                             "agent.yaml")
    for schema in (ToolOptimizer.schema(ToolOptimizer.__new__(ToolOptimizer), spec),
                   PipelineOptimizer.schema(spec)):
        assert repeat_states(schema_regex(schema, " ")) <= 600, schema.__name__  # 40 MB


def test_compiled_indexes_held_in_memory_are_bounded_and_reloaded_from_disk(tmp_path,
                                                                             monkeypatch):
    from outlines_core import Vocabulary
    from pydantic import BaseModel

    from localsym.lm import schema_index
    from localsym.lm.schema_index import IndexStore

    class A(BaseModel):
        a: int

    class B(BaseModel):
        b: bool

    vocab = Vocabulary(0, {bytes([c]): [c] for c in range(32, 127)})
    monkeypatch.setattr(schema_index, "MEMORY_BYTES", 1)  # room for one index at a time
    store = IndexStore(tmp_path)
    first = store.index_for(A, "", {}, lambda: vocab)
    store.index_for(B, "", {}, lambda: vocab)
    assert store.compiled == 2 and len(store._memory) == 1  # A was let go
    # the decoder's forced-text table goes with the held index itself: never to an index let
    # go (a new one may be made at its address, and an id-keyed table then answered for the
    # wrong schema: "No next state found" mid-run)
    assert store.table_for(first) is None
    again = store.index_for(A, "", {}, lambda: pytest.fail("compiled again"))
    assert store.loaded == 1 and again.get_allowed_tokens(again.get_initial_state()) == \
        first.get_allowed_tokens(first.get_initial_state())
    assert isinstance(store.table_for(again), dict) and store.table_for(first) is None
