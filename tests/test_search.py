"""The search over candidate edits: what code lists, the strict gate, the Pareto pool, merges,
the invariants (final outputs), the spec features the edits set (patterns, bindings, tool turns
in demonstrations), and one short run on the embedded model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import RoutedLM, listed, run_events
from localsym.learn.optim import LearningRate
from localsym.agent import Pipeline, PipelineSpec
from localsym.agent.spec import PromptWeights
from localsym.agent.tools import default_tools
from localsym.data import Example
from localsym.metrics import numeric_match
from localsym.errors import ConfigError
from localsym.learn import MetricLoss, ToolOptimizer, TrainConfig, Trainer
from localsym.learn.propose.demos import labeled_demonstrations
from localsym.learn.propose.merge import merge
from localsym.learn.edits import AddNode, AttachTool, SetPrompt, SetToolText
from localsym.learn.propose.structure import structural_edits
from localsym.learn.gate import gate
from localsym.learn.search import PoolEntry, minibatch, pareto_front, sample_parent
from test_learn_logic import ROUTES, batch_for, spec

ARITH = {"name": "arith", "description": "Multiply.", "inputs": [{"name": "question"}],
         "tools": [{"name": "calculator", "description": "A tool."}],
         "nodes": [{"name": "solve", "inputs": ["question"],
                    "outputs": [{"name": "answer", "type": "int"}]}]}


def test_structural_edits_attach_every_declared_tool_with_patterns_and_bindings():
    registry = default_tools()

    @registry.register
    def lookup(word: str) -> str:
        """Look a word up."""
        return word

    s = PipelineSpec.from_data({**ARITH, "tools": ARITH["tools"] + [
        {"name": "lookup", "description": "Look up."}]})
    found = listed(structural_edits(s, registry))
    assert "attach tool calculator to solve" in found and "attach tool lookup to solve" in found
    group = [k for k in found if "bind solve.answer to the result of calculator" in k
             and "pattern [0-9]{1,9} ?[-+*/] ?[0-9]{1,9}" in k]
    assert group, sorted(found)
    node = found[group[0]].node("solve")
    assert node.tools == ("calculator",) and node.tool_choice == "required"
    assert node.bind == {"answer": "calculator"}
    assert found[group[0]].tool("calculator").patterns == {
        "expression": "[0-9]{1,9} ?[-+*/] ?[0-9]{1,9}"}
    # lookup's word is a str argument: the generic bounded pattern is on its menu
    assert any("tool lookup argument word pattern" in k for k in found)
    # once attached: detach, flip tool_choice, unbind are listed
    attached = found[group[0]]
    again = set(listed(structural_edits(attached, registry)))
    assert {"detach tool calculator from solve", "tool_choice auto in solve",
            "unbind solve.answer"} <= again


def test_a_bound_output_is_the_tool_result_and_the_node_ends_at_the_call():
    s = PipelineSpec.from_data({**ARITH, "tools": [{"name": "calculator", "description": "t",
                                                   "patterns": {"expression": "[0-9]+ ?[*] ?[0-9]+"}}],
                                "nodes": [{**ARITH["nodes"][0], "tools": ["calculator"],
                                           "tool_choice": "required",
                                           "bind": {"answer": "calculator"}}]})
    lm = RoutedLM({"solve_step": lambda m: {"action": {"tool": "calculator",
                                                        "args": {"expression": "12*3"}}}})
    traj = Pipeline(s, lm).forward({"question": "12 times 3?"})
    assert traj.outputs == {"answer": 36} and len(lm.calls) == 1  # no finish call
    # the pattern is part of the schema the decoder is given
    from localsym.agent.pipeline import step_model

    schema = Pipeline(s, lm)._step_schema(s.node("solve"), (), False)
    assert "[0-9]+ ?[*] ?[0-9]+" in json.dumps(schema.model_json_schema())
    assert step_model.cache_info().currsize >= 1


def test_a_written_first_call_takes_the_input_as_it_is_and_no_model_call():
    s = PipelineSpec.from_data({**ARITH, "nodes": [{**ARITH["nodes"][0], "tools": ["calculator"],
                                                    "arg_from": {"calculator.expression":
                                                                 "question"},
                                                    "bind": {"answer": "calculator"}}]})
    lm = RoutedLM({})  # any model call would fail: none is made
    traj = Pipeline(s, lm).forward({"question": "12 * 3"})
    assert traj.outputs == {"answer": 36} and lm.calls == []
    rec = traj.records[0]
    assert [c.args for c in rec.tool_calls] == [{"expression": "12 * 3"}]
    assert '"expression": "12 * 3"' in rec.messages[-2]["content"]  # the turn as if written
    # a call that fails leaves the node to the model, which sees the error
    lm = RoutedLM({"solve_step": lambda m: {"action": {"tool": "finish",
                                                        "outputs": {"answer": 5}}}})
    traj = Pipeline(s, lm).forward({"question": "twelve"})
    assert traj.outputs == {"answer": 5} and len(lm.calls) == 1
    assert "ERROR" in traj.records[0].messages[-1]["content"]
    # listed as structural edits: the input wired into the tool's one required argument
    found = listed(structural_edits(PipelineSpec.from_data(ARITH), default_tools()))
    key = ("attach tool calculator to solve; call calculator first with expression = question; "
           "bind solve.answer to the result of calculator")
    assert found[key].node("solve").arg_from == {"calculator.expression": "question"}
    again = set(listed(structural_edits(found[key], default_tools())))
    assert "solve: drop the written call of calculator" in again
    detached = listed(structural_edits(found[key], default_tools()))
    assert detached["detach tool calculator from solve"].node("solve").arg_from == {}
    with pytest.raises(ConfigError, match="has the arguments"):
        Pipeline(PipelineSpec.from_data({**ARITH, "nodes": [{
            **ARITH["nodes"][0], "tools": ["calculator"],
            "arg_from": {"calculator.expr": "question"}}]}), lm)


@pytest.mark.parametrize("data, message", [
    ({**ARITH, "nodes": [{**ARITH["nodes"][0], "outputs": [
        {"name": "answer", "pattern": "[0-9"}]}]}, "field 'answer': pattern '[0-9'"),
    ({**ARITH, "tools": [{"name": "calculator", "description": "t",
                          "patterns": {"expression": "(("}}]},
     "tool 'calculator' argument 'expression': pattern"),
    ({**ARITH, "nodes": [{**ARITH["nodes"][0], "bind": {"answer": "calculator"}}]},
     "which the node does not use"),
    ({**ARITH, "nodes": [{**ARITH["nodes"][0], "tools": ["calculator"],
                          "arg_from": {"calculator.expression": "nope"}}]},
     "which is not one of its inputs"),
    ({**ARITH, "nodes": [{**ARITH["nodes"][0], "arg_from": {"calculator.expression": "question"}}]},
     "is not 'tool.argument' of one of its tools"),
])
def test_a_bad_pattern_or_binding_is_one_clear_error(data, message):
    with pytest.raises(ConfigError) as err:
        PipelineSpec.from_data(data)
    assert message in str(err.value) and "\n" not in str(err.value).strip()


def test_tool_demonstrations_show_the_tool_turns():
    s = PipelineSpec.from_data({**ARITH, "nodes": [{**ARITH["nodes"][0], "tools": ["calculator"],
                                                    "demonstrations": [{
                                                        "inputs": {"question": "2 times 3?"},
                                                        "outputs": {"answer": 6},
                                                        "tool_calls": [{"tool": "calculator",
                                                                        "args": {"expression": "2*3"},
                                                                        "result": "6"}]}]}]})
    msgs = Pipeline(s, RoutedLM({})).messages_for(s.node("solve"), {"question": "4 times 5?"})
    said = [m["content"] for m in msgs[1:]]
    assert json.loads(said[1]) == {"action": {"tool": "calculator", "args": {"expression": "2*3"}}}
    assert said[2] == "Result of calculator: 6"
    assert json.loads(said[3]) == {"action": {"tool": "finish", "outputs": {"answer": 6}}}


def test_tool_selection_is_never_starved_by_text_edits():
    answer = {"reasoning": "r",
              "edits": [{"tool": "calculator", "field": "description", "new_text": "Computes."}],
              "selection": [{"node": "plan", "add": ["calculator"], "remove": []}]}
    lm = RoutedLM({**ROUTES, "ToolUpdate": lambda m: answer})
    s = spec()
    proposal = ToolOptimizer(lm, LearningRate(max_fields=1)).step(s, batch_for(s, lm), [])
    assert proposal.spec.tool("calculator").description == "Computes."
    assert proposal.spec.node("plan").tools == ("calculator",), proposal.rejected


def test_the_gate_is_strict_and_breaks_ties_by_dense_score_without_losses():
    assert gate([1, 0, 1], [1, 0, 0])[0]
    assert not gate([1, 0, 0], [1, 0, 0])[0]  # a tie is not a gain
    assert not gate([0, 0, 0], [1, 0, 0])[0]
    assert gate([1, 0, 0], [1, 0, 0], dense_new=-0.5, dense_old=-0.9)[0]
    assert not gate([0, 1, 0], [1, 0, 0], dense_new=-0.5, dense_old=-0.9)[0]  # lost one
    assert not gate([1, 1, 0], [1, 0, 0], min_gain=0.5)[0]


def test_a_gain_of_a_few_examples_is_noise_under_the_default_paired_test():
    cfg = TrainConfig()  # paired_test: auto, alpha 0.05 spent over two looks
    old = [0.0] * 32
    few = [1.0] * 3 + [0.0] * 29  # 3 examples of 32 gained, none lost: p = 1/8
    verdict = gate(few, old, alpha=cfg.paired_alpha(32), seed=1)
    assert not verdict.accepted and "no significant gain" in verdict.reason
    assert verdict.promising and verdict.p > 0.1  # a gain all the same: worth a second look
    assert gate([1.0] * 32, old, alpha=cfg.paired_alpha(32))[0]  # a real gain passes
    # a tie broken by the dense score is not a gain: the test does not apply to it
    assert gate(old, old, dense_new=-0.5, dense_old=-0.9, alpha=cfg.paired_alpha(32))[0]
    # auto: half of alpha at each look; a split of 5 can never reach p < 0.025 (2^-5), so the
    # test is skipped; true keeps it; with no second look the first gets all of alpha
    assert cfg.paired_alpha(5) is None and cfg.paired_alpha(6) == 0.025
    assert TrainConfig(paired_test=True).paired_alpha(4) == 0.025
    assert TrainConfig(evidence=0).paired_alpha(5) == 0.05
    assert TrainConfig(paired_test=False).paired_alpha(32) is None


def test_a_tie_never_buys_cost():
    same = [1.0, 0.0, 1.0]
    # equal scores and a likelier gold answer, but two model calls per example instead of one
    verdict = gate(same, same, dense_new=-0.1, dense_old=-0.9, calls_new=2.0, calls_old=1.0)
    assert not verdict.accepted and "never buys cost" in verdict.reason
    # equal scores, fewer calls: the cheaper agent is kept
    verdict = gate(same, same, calls_new=1.0, calls_old=2.0)
    assert verdict.accepted and "fewer model calls" in verdict.reason
    # as many calls: the dense score decides, as before
    assert gate(same, same, dense_new=-0.1, dense_old=-0.9, calls_new=1.0, calls_old=1.0)[0]
    # a strict gain may cost more calls
    assert gate([1.0, 1.0, 1.0], same, calls_new=3.0, calls_old=1.0)[0]
    # in tokens too: as many calls, a likelier answer, but longer prompts (demonstrations)
    verdict = gate(same, same, dense_new=-0.1, dense_old=-0.9, calls_new=1.0, calls_old=1.0,
                   tokens_new=480.0, tokens_old=120.0)
    assert not verdict.accepted and "more tokens" in verdict.reason
    verdict = gate(same, same, calls_new=1.0, calls_old=1.0, tokens_new=90.0, tokens_old=120.0)
    assert verdict.accepted and "fewer tokens" in verdict.reason


def test_pareto_front_keeps_per_example_winners_and_samples_from_them():
    s = PipelineSpec.from_data(ARITH)
    pool = [PoolEntry(spec=s, scores=[1, 0, 0, 0]), PoolEntry(spec=s, scores=[0, 1, 1, 0]),
            PoolEntry(spec=s, scores=[0, 1, 0, 0])]  # the third is dominated by the second
    front = pareto_front(pool)
    assert set(front) == {0, 1} and front[1] == 3  # three examples: two wins, one shared zero
    picks = {sample_parent(pool, np.random.default_rng(i)) for i in range(40)}
    assert picks == {0, 1}
    assert minibatch(["a", "b", "c", "d"], ["c"], 3, np.random.default_rng(0))[0] == "c"


def test_merge_combines_disjoint_edits_and_refuses_conflicts():
    s = PipelineSpec.from_data(ARITH)
    node = s.node("solve")
    a = [AttachTool(node=node.name, tool="calculator")]
    b = [SetToolText(tool="calculator", field="description", text="Computes.")]
    m = merge(s, a, b)
    assert m.node("solve").tools == ("calculator",) and m.tool("calculator").description == "Computes."
    c = [SetPrompt(node="solve", field="task", text="Other.")]
    assert merge(s, a, c) is None  # both changed the node


def test_labeled_demonstrations_are_label_balanced():
    s = PipelineSpec.from_data({"inputs": [{"name": "q"}], "nodes": [
        {"name": "j", "inputs": ["q"], "outputs": [{"name": "answer", "choices": ["yes", "no"]}]}]})
    train = [Example(id=f"y{i}", inputs={"q": f"y{i}"}, expected={"answer": "yes"}) for i in range(6)]
    train += [Example(id="n0", inputs={"q": "n0"}, expected={"answer": "no"})]
    (child,) = labeled_demonstrations(s, train, [2], seed=0)
    assert sorted(d.outputs["answer"] for d in child.spec.node("j").demonstrations) == ["no", "yes"]


def _counting_lm(good_marker: str):
    """An agent that answers right only when its prompt holds ``good_marker``."""
    def solve(messages):
        right = good_marker in messages[0]["content"]
        return {"answer": 36 if right else 1}
    return RoutedLM({"solve_output": solve})


class MarkerOptimizer:
    """Proposes one workflow edit that drops the final output and one prompt edit that helps."""

    name = "prompt"

    def step(self, spec, batch, memory):
        from localsym.learn.optim import Proposal
        proposal = Proposal(spec=spec)
        proposal.add(SetPrompt(node="solve", field="task", text="MARK"))
        return proposal


def test_a_step_screens_validates_and_accepts_only_a_strict_gain(tmp_path):
    lm = _counting_lm("MARK")
    s = PipelineSpec.from_data({**ARITH, "tools": []})
    data = [Example(id=f"e{i}", inputs={"question": f"q{i}"}, expected={"answer": 36})
            for i in range(4)]
    trainer = Trainer(Pipeline(s, lm), MetricLoss(numeric_match), {"prompt": MarkerOptimizer()},
                      lm, TrainConfig(optimizers=("prompt", "structure"), batch_size=2,
                                      max_steps=2, tie_break="none", backprop=False),
                      metric=numeric_match, run_dir=tmp_path, log=lambda *_: None)
    state = trainer.fit(data, data)
    assert state.best_spec.node("solve").prompt.task == "MARK" and state.best_score == 1.0
    assert len(state.pool) == 2 and state.pool[1].source == "prompt"
    first = run_events(tmp_path, "step")[0]
    assert first["decision"] == "accepted" and first["val_after"] == 1.0
    (cand,) = [c for c in first["candidates"] if c["source"] == "prompt"]
    assert cand["minibatch"] == 1.0 and cand["val"] == 1.0 and cand["decision"] == "accepted"


def test_a_parent_with_full_marks_on_the_minibatch_is_not_screened_against(tmp_path):
    lm = _counting_lm("MARK")  # the agent is right from the start
    s = PipelineSpec.from_data({**ARITH, "tools": [], "nodes": [
        {**ARITH["nodes"][0], "prompt": {"task": "MARK"}}]})
    data = [Example(id=f"e{i}", inputs={"question": f"q{i}"}, expected={"answer": 36})
            for i in range(4)]
    trainer = Trainer(Pipeline(s, lm), MetricLoss(numeric_match), {}, lm,
                      TrainConfig(optimizers=("demonstrations",), batch_size=2, max_steps=1,
                                  screen_size=4, tie_break="none"),
                      metric=numeric_match, run_dir=tmp_path, log=lambda *_: None)
    state = trainer.fit(data, data)
    (step,) = run_events(tmp_path, "step")
    assert step["candidates"] and step["decision"] == "no change"  # listed, none scored
    assert all(c["minibatch"] is None and "full marks" in c["reason"] for c in step["candidates"])
    # validation at the start (4), the batch (2), the parent on the minibatch (4): nothing more
    assert len(lm.calls) == 10 and state.memory == []


def test_the_budget_is_checked_between_candidates_inside_a_step(tmp_path):
    from localsym.budget import Budget
    from localsym.learn.checkpoint import RunDirectory
    from localsym.learn.events import StartEvent, StoppedEvent

    class Counted(RoutedLM):
        def usage(self):
            return {"misses": len(self.calls)}

    data = [Example(id=f"e{i}", inputs={"question": f"q{i}"}, expected={"answer": 36})
            for i in range(4)]

    def fit(run_dir, budget=None, resume=False):
        lm = Counted(_counting_lm("MARK").routes)
        trainer = Trainer(Pipeline(PipelineSpec.from_data({**ARITH, "tools": []}), lm),
                          MetricLoss(numeric_match), {"prompt": MarkerOptimizer()}, lm,
                          TrainConfig(optimizers=("demonstrations", "prompt"), batch_size=2,
                                      max_steps=2, screen_size=2, tie_break="none",
                                      backprop=False),
                          metric=numeric_match, run_dir=run_dir, log=lambda *_: None,
                          budget=budget)
        return trainer.fit(data, data, resume=resume), lm

    # 4 calls validate the start, 2 forward the batch, 2 screen the parent, 2 the first
    # candidate: the 9-call budget is spent before the second is screened, inside step 1
    state, lm = fit(tmp_path / "cut", Budget(calls=9))
    assert len(lm.calls) == 10 and state.step == 0 and state.stopped.startswith("budget of 9")
    run = RunDirectory(tmp_path / "cut")
    assert [type(e) for e in run.events()] == [StartEvent, StoppedEvent]  # the step is dropped
    assert json.loads((tmp_path / "cut" / "state.json").read_text())["step"] == 0
    resumed, _ = fit(tmp_path / "cut", resume=True)
    unlimited, _ = fit(tmp_path / "full")
    assert resumed.step == 2 and resumed.best_spec == unlimited.best_spec
    assert resumed.best_score == 1.0  # the prompt edit the cut step had screened, accepted
    assert [(e.step, e.decision) for e in run.steps()] == \
        [(e.step, e.decision) for e in RunDirectory(tmp_path / "full").steps()]


def test_the_run_directory_reads_events_typed_and_leaves_out_what_is_not_one(tmp_path):
    from localsym.learn.checkpoint import RunDirectory
    from localsym.learn.events import StartEvent, StepEvent

    run = RunDirectory(tmp_path)
    run.event(StartEvent(val_score=0.25))
    run.event(StepEvent(step=1, decision="rolled back", val_before=0.25, val_after=0.2))
    with open(run.events_path, "a") as f:
        f.write(json.dumps({"event": "step", "decision": "<b>x</b>"}) + "\n")  # not an event
        f.write(json.dumps({"event": "step", "step": 2, "decision": "no change",
                            "from_a_newer_writer": [1]}) + "\n")
        f.write('{"event": "step", "st')  # torn
    assert run.start().val_score == 0.25
    assert [(e.step, e.decision) for e in run.steps()] == [(1, "rolled back"), (2, "no change")]
    state = type("State", (), {"step": 1})()  # checkpointed at step 1: step 2 runs again
    run.reconcile_events(state)
    assert [(e.event, e.step) for e in run.events()] == [("start", 0), ("step", 1)]
    assert "from_a_newer_writer" not in run.events_path.read_text()
    run.event(StepEvent(step=2, decision="accepted", candidates=[
        {"source": "structure", "edits": ["attach tool calculator to solve"], "val": 1.0}]))
    assert run.steps()[1].candidates[0].val == 1.0 and run.events()[0].time > 0


def test_an_edit_that_changes_the_final_outputs_is_rejected_before_scoring(tmp_path):
    class DropOutput:
        name = "pipeline"

        def step(self, spec, batch, memory):
            from localsym.agent.spec import NodeSpec
            from localsym.learn.optim import Proposal
            proposal = Proposal(spec=spec)
            assert proposal.add(AddNode(after="solve", node_spec=NodeSpec(
                name="extra", prompt=PromptWeights(task="t"), inputs=("answer",),
                outputs=({"name": "note"},))))
            return proposal

    lm = _counting_lm("never")
    s = PipelineSpec.from_data({**ARITH, "tools": []})
    data = [Example(id="e0", inputs={"question": "q"}, expected={"answer": 36})]
    trainer = Trainer(Pipeline(s, lm), MetricLoss(numeric_match), {"pipeline": DropOutput()}, lm,
                      TrainConfig(optimizers=("pipeline",), max_steps=1, backprop=False),
                      metric=numeric_match, run_dir=tmp_path, log=lambda *_: None)
    trainer.fit(data, data)
    (step,) = [json.loads(l) for l in (tmp_path / "events.jsonl").read_text().splitlines()
               if json.loads(l)["event"] == "step"]
    assert step["candidates"] == [] and "changes the final outputs" in step["rejected_edits"][0]
    assert not any(name.startswith("extra") for name, _ in lm.calls)  # never run


@pytest.mark.slow
def test_a_short_run_on_the_embedded_model_finds_how_to_compute_the_answer(tmp_path):
    """The real model, the real CLI: a small arithmetic run whose search (structural edits
    and programs only, to stay short) finds how to compute the product and beats the untrained
    agent."""
    import shutil
    import subprocess
    import sys

    example = tmp_path / "arith"
    shutil.copytree("examples/arithmetic", example)
    for split, n in (("train", 4), ("val", 4), ("test", 4)):
        path = example / "data" / f"{split}.jsonl"
        path.write_text("".join(path.read_text().splitlines(True)[:n]))
    (example / "config.yaml").write_text(
        "agent: agent.yaml\ndataset: {train: data/train.jsonl, val: data/val.jsonl, "
        "test: data/test.jsonl}\nmetric: numeric_match\n"
        "train: {batch_size: 2, max_steps: 1, screen_size: 2, max_validate: 1, "
        "optimizers: [structure]}\nsampling: {max_tokens: 32, max_tokens_limit: 64}\n")
    proc = subprocess.run([sys.executable, "-m", "localsym.cli", "train",
                           str(example / "config.yaml"), "--quiet", "--run-dir",
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test_after"] > summary["test_before"]
    best = PipelineSpec.load(tmp_path / "run" / "best_spec.json").node("solve")
    assert best.program is not None or best.tools == ("calculator",)  # found, not written


def test_the_dense_target_is_the_answer_as_the_final_node_gives_it():
    from localsym.learn.search import dense_target

    plain = PipelineSpec.from_data(ARITH)
    assert json.loads(dense_target(plain, {"answer": 6})) == {"answer": 6}
    tool = PipelineSpec.from_data({**ARITH, "nodes": [{**ARITH["nodes"][0],
                                                       "tools": ["calculator"]}]})
    assert json.loads(dense_target(tool, {"answer": 6})) == {
        "action": {"tool": "finish", "outputs": {"answer": 6}}}
    bound = PipelineSpec.from_data({**ARITH, "nodes": [{**ARITH["nodes"][0], "tools": ["calculator"],
                                                        "bind": {"answer": "calculator"}}]})
    assert dense_target(bound, {"answer": 6}) is None


def test_the_report_diff_names_the_structural_edits():
    from localsym.report import spec_diffs

    s = PipelineSpec.from_data(ARITH)
    (found,) = [c.spec for c in structural_edits(s, default_tools())
                if len(c.edits) == 4 and "pattern [0-9]{1,9} ?[-+*/] ?[0-9]{1,9}" in c.text]
    targets = {r["target"] for r in spec_diffs(s, found)}
    assert {"solve.tools", "solve.tool_choice", "solve.bind", "tool calculator.patterns"} <= targets


def test_a_free_text_output_can_be_bound_to_a_text_tool_but_not_a_constrained_one():
    from localsym.agent.bindings import bound_outputs
    from localsym.agent.tools import ToolCallRecord, ToolRegistry

    registry = ToolRegistry()

    @registry.register
    def sort_words(words: str) -> str:
        """Sort words."""
        return " ".join(sorted(words.split()))

    data = {"name": "sorter", "description": "Sort.", "inputs": [{"name": "words"}],
            "tools": [{"name": "sort_words", "description": "A tool."}],
            "nodes": [{"name": "sort", "inputs": ["words"],
                       "outputs": [{"name": "sorted"},
                                   {"name": "kind", "choices": ["short", "long"]}]}]}
    found = listed(structural_edits(PipelineSpec.from_data(data), registry))
    assert any(k.endswith("bind sort.sorted to the result of sort_words") for k in found)
    assert not any("bind sort.kind" in k for k in found)  # choices: the model's to write
    # at run time a bound value must still fit the field: choices and patterns are kept
    node = PipelineSpec.from_data({**data, "nodes": [{**data["nodes"][0], "tools": ["sort_words"],
                                   "outputs": [{"name": "sorted", "pattern": "[a-z ]+"},
                                               {"name": "kind", "choices": ["short", "long"]}],
                                   "bind": {"sorted": "sort_words", "kind": "sort_words"}}]}
                                  ).node("sort")
    rec = ToolCallRecord(tool="sort_words", args={"words": "b a"}, result="a b")
    assert bound_outputs(node, rec) == {"sorted": "a b"}
    assert bound_outputs(node, rec.model_copy(update={"result": "short"})) == {
        "sorted": "short", "kind": "short"}
    assert bound_outputs(node, rec.model_copy(update={"result": "A B"})) == {}
    # a number tool (the calculator) never binds free text; in two nodes, the nodes take turns
    two = PipelineSpec.from_data({**ARITH, "nodes": [
        {"name": "read", "inputs": ["question"], "outputs": [{"name": "expression"}]},
        {"name": "solve", "inputs": ["expression"], "outputs": [{"name": "answer", "type": "int"}]}],
        "edges": [{"source": "read", "target": "solve"}]})
    listing = [[e.describe() for e in c.edits] for c in structural_edits(two, default_tools())]
    assert not any("bind read.expression" in x for e in listing for x in e)
    assert "read" in listing[0][0] and "solve" in listing[1][0]
    # a group that binds the answer comes before the partial ones of its tool
    solve = [e for e in listing if "solve" in e[0]]
    assert solve[0][-1] == "bind solve.answer to the result of calculator"


def test_a_bound_int_is_read_exactly_and_a_fraction_binds_nothing():
    from localsym.agent.bindings import bound_outputs
    from localsym.agent.tools import ToolCallRecord

    s = PipelineSpec.from_data({**ARITH, "nodes": [{**ARITH["nodes"][0], "tools": ["calculator"],
                                                    "bind": {"answer": "calculator"}}]})
    node = s.node("solve")

    def call(result):
        return ToolCallRecord(tool="calculator", args={}, result=result)

    assert bound_outputs(node, call("12345678901234567891")) == {"answer": 12345678901234567891}
    assert bound_outputs(node, call("36.0")) == {"answer": 36}
    assert bound_outputs(node, call("2.5")) == {}
    assert bound_outputs(node, ToolCallRecord(tool="calculator", args={}, error="boom")) == {}
