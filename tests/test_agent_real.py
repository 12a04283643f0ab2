"""The symbolic network and one training step on the real embedded model."""

from __future__ import annotations


import pytest

from localsym.agent import Pipeline, PipelineSpec
from localsym.data import Example
from localsym.metrics import numeric_match
from localsym.learn import LanguageLoss, LearningRate, LogProbLoss, TrainConfig, Trainer, default_optimizers
from localsym.lm import SamplingParams, open_lm
from conftest import run_events

SPEC = {
    "name": "arith", "description": "Answer arithmetic questions with a number.",
    "inputs": [{"name": "question"}],
    "tools": [{"name": "calculator", "description": "Evaluate an arithmetic expression like 3*12."}],
    "nodes": [
        {"name": "plan", "prompt": {"task": "Write the arithmetic expression that answers the question."},
         "inputs": ["question"],
         "outputs": [{"name": "expression", "description": "digits and + - * / only"}]},
        {"name": "solve", "prompt": {"task": "Compute the value of the expression.",
                                     "rules": "Call the calculator with the expression, then finish with its result."},
         "tools": ["calculator"], "tool_choice": "required", "max_tool_steps": 2,
         "inputs": ["expression"], "outputs": [{"name": "answer", "type": "int"}]}]}
SMALL = SamplingParams(max_tokens=48, max_tokens_limit=96, on_limit="close")


@pytest.fixture
def lm(cache_dir):
    lm = open_lm(cache_dir=cache_dir)
    yield lm
    lm.close()


def test_forward_of_a_two_node_pipeline_with_a_tool(lm):
    spec = PipelineSpec.from_data(SPEC)
    traj = Pipeline(spec, lm).forward({"question": "What is 7 times 8?"})
    assert traj.ok and [r.node for r in traj.records] == ["plan", "solve"]
    plan, solve = traj.records
    assert plan.inputs == {"question": "What is 7 times 8?"}
    assert set(plan.outputs) == {"expression"} and isinstance(plan.outputs["expression"], str)
    assert plan.weights == spec.node("plan").model_dump(mode="json")
    assert plan.messages[0]["role"] == "system" and "Your step: Write the arithmetic" in plan.messages[0]["content"]
    assert plan.messages[-1]["content"] == "question: What is 7 times 8?"
    assert solve.inputs == {"expression": plan.outputs["expression"]}
    assert solve.tool_calls, "tool_choice=required: the first step is a tool call"
    for call in solve.tool_calls:
        assert call.tool == "calculator" and "expression" in call.args
        assert (call.result is None) != (call.error is None)
        assert any(f"Result of calculator: {call.result or 'ERROR: ' + call.error}" == m["content"]
                   for m in solve.messages)
    assert isinstance(solve.outputs["answer"], int)
    assert traj.outputs == solve.outputs and traj.seconds > 0


def test_one_training_step_on_the_embedded_model(lm, tmp_path):
    spec = PipelineSpec.from_data(SPEC)
    pipe = Pipeline(spec, lm, params=SamplingParams(max_tokens=48, max_tokens_limit=96))
    train = [Example(id="t1", inputs={"question": "What is 3 times 12?"}, expected={"answer": 36})]
    val = [Example(id="v1", inputs={"question": "What is 2 plus 5?"}, expected={"answer": 7})]
    trainer = Trainer(pipe, LanguageLoss(lm, spec.description, numeric_match, params=SMALL),
                      default_optimizers(lm, LearningRate(max_change=1.0)), lm,
                      TrainConfig(batch_size=1, max_steps=1, optimizers=("prompt", "tool", "pipeline"),
                                  screen_size=1, max_validate=1), metric=numeric_match,
                      run_dir=tmp_path, meta_sampling=SMALL, log=lambda *_: None)
    for opt in trainer.optimizers.values():
        if hasattr(opt, "params"):
            opt.params = SMALL
    state = trainer.fit(train, val)
    (step,) = run_events(tmp_path, "step")
    (loss,) = step["losses"]
    # a ground truth: the metric and the raw evidence, no judge call
    assert loss["kind"] == "metric" and 0.0 <= loss["score"] <= 1.0
    assert "What is 3 times 12?" in loss["analysis"] and "expected" in loss["analysis"]
    if loss["score"] < 1.0:  # gradients only for a failure
        (grads,) = step["gradients"]
        assert [g["node"] for g in grads["nodes"]] == ["plan", "solve"]  # one gradient per node
        assert grads["workflow"] is not None
        # every LLM optimizer proposed a candidate, or its edits were refused by the rules
        assert step["candidates"] or step["rejected_edits"]
    else:
        assert step["gradients"] == []
    assert step["decision"] in ("accepted", "rolled back", "no change")
    if step["decision"] == "rolled back":
        assert state.spec == spec  # restored exactly
    assert state.step == 1 and (tmp_path / "state.json").is_file()
    assert PipelineSpec.load(tmp_path / "best_spec.json") == state.best_spec


def test_dense_logprob_loss_reads_the_logits(lm):
    spec = PipelineSpec.from_data({**SPEC, "nodes": [SPEC["nodes"][0]]})
    traj = Pipeline(spec, lm).forward({"question": "What is 3 times 12?"})
    ex = Example(id="x", inputs={}, expected={"expression": "3*12"})
    record = LogProbLoss(lm)(traj, ex)
    assert 0.0 < record.score < 1.0 and "per-token probability" in record.analysis
    hits = lm.hits
    assert LogProbLoss(lm)(traj, ex) == record and lm.hits == hits + 1  # cached
    worse = LogProbLoss(lm)(traj, Example(id="y", inputs={}, expected={"expression": "zebra"}))
    assert worse.score != record.score


def test_node_major_batch_equals_one_by_one_and_reuses_the_shared_prefix(cache_dir):
    """forward_batch runs node 1 over the batch, then node 2: the same trajectories as running
    each example alone, with fewer prompt tokens evaluated (the node prompt stays in the KV)."""
    spec = PipelineSpec.from_data(SPEC)
    questions = [{"question": f"What is {a} times {b}?"} for a, b in ((3, 4), (6, 7), (9, 2))]
    results = {}
    for mode in ("alone", "batch"):
        lm = open_lm(cache_dir=cache_dir / mode)  # nothing cached: every call reaches the model
        pipe = Pipeline(spec, lm, params=SMALL)
        if mode == "alone":
            trajs = [pipe.forward(q) for q in questions]
        else:
            trajs = pipe.forward_batch(questions)
        backend = lm.backend
        results[mode] = ([[(r.node, r.outputs, [c.model_dump(exclude={"seconds"}) for c in r.tool_calls])
                           for r in t.records] for t in trajs],
                         backend.prompt_tokens_evaluated / backend.prompt_tokens_submitted)
        lm.close()
    assert results["batch"][0] == results["alone"][0]
    assert results["batch"][1] < results["alone"][1]
