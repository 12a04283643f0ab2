"""The algorithm's pure logic with a scripted LM: the chain rule, optimizers' rules, the gate,
rollback and resume. (The real model runs the same code in test_train.py.)"""

from __future__ import annotations

import json

import pytest

from conftest import RoutedLM, run_events
from localsym.learn.optim import LearningRate
from localsym.agent import Pipeline, PipelineSpec
from localsym.data import Example
from localsym.metrics import numeric_match
from localsym.learn import (Batch, MetricLoss, PipelineOptimizer,
                            PromptOptimizer, ToolOptimizer, TrainConfig, Trainer, backward)
from localsym.learn.optim.workflow import (Connection as Rewire, DropNode as RemoveNode,
                                           NewNode as AddNode, NodeText as EditNode)
from test_spec import TWO_NODES


def spec(**changes):
    return PipelineSpec.from_data({**TWO_NODES, **changes})


def gradient_answer(messages):
    text = messages[-1]["content"]
    node = text.split('The step is node "')[1].split('"')[0]
    return {"analysis": f"analysis of {node}", "tool_feedback": "none",
            "suggestions": [{"field": "task", "suggestion": f"be precise in {node}"}],
            "requirement": f"REQUIREMENT-FROM-{node}"}


ROUTES = {
    "plan_output": lambda m: {"expression": "3*12"},
    "solve_step": lambda m: ({"action": {"tool": "calculator", "args": {"expression": "3*12"}}}
                             if not any("Result of" in x["content"] for x in m)
                             else {"action": {"tool": "finish", "outputs": {"answer": 36}}}),
    "NodeGradientAnswer": gradient_answer,
    "WorkflowGradientAnswer": lambda m: {"analysis": "fine", "suggestion": "keep the workflow"},
}


def test_backward_walks_the_tape_in_reverse_and_chains_requirements():
    lm = RoutedLM(ROUTES)
    s = spec()
    traj = Pipeline(s, lm).forward({"question": "3 boxes of 12?"})
    assert [r.node for r in traj.records] == ["plan", "solve"]
    assert traj.records[1].tool_calls[0].result == "36" and traj.outputs == {"answer": 36}
    loss = MetricLoss(numeric_match)(traj, Example(id="e", inputs={}, expected={"answer": 35}))
    assert loss.score == 0.0 and "expected 35" in loss.feedback
    lm.calls.clear()
    grads = backward(traj, loss, s, lm, "e")
    order = [name for name, _ in lm.calls]
    assert order == ["NodeGradientAnswer", "NodeGradientAnswer", "WorkflowGradientAnswer"]
    solve_prompt = lm.calls[0][1][-1]["content"]
    plan_prompt = lm.calls[1][1][-1]["content"]
    assert 'node "solve"' in solve_prompt and "expected 35" in solve_prompt  # the loss
    assert 'node "plan"' in plan_prompt and "REQUIREMENT-FROM-solve" in plan_prompt  # chain rule
    assert [g.node for g in grads.nodes] == ["plan", "solve"]
    assert grads.nodes[0].suggestions == {"task": "be precise in plan"}


def batch_for(s, lm, expected=36):
    traj = Pipeline(s, lm).forward({"question": "q"})
    ex = Example(id="e", inputs={"question": "q"}, expected={"answer": expected})
    loss = MetricLoss(numeric_match)(traj, ex)
    return Batch(trajectories=[traj], gradients=[backward(traj, loss, s, lm, "e")])


def test_prompt_optimizer_enforces_its_learning_rate_and_keeps_variables():
    edits = [{"field": "task", "new_text": "Write the arithmetic expression for {{ question }}."},
             {"field": "rules", "new_text": "Use only digits and + - * /."},
             {"field": "style", "new_text": "Terse."}]
    lm = RoutedLM({**ROUTES, "PromptUpdate": lambda m: {"reasoning": "r", "edits": edits}})
    s = spec()
    proposal = PromptOptimizer(lm, LearningRate(max_fields=2)).step(s, batch_for(s, lm), [])
    plan = proposal.spec.node("plan")
    assert plan.prompt.task == edits[0]["new_text"] and plan.prompt.rules == edits[1]["new_text"]
    assert plan.prompt.style == ""  # third field: over the limit
    assert any("over the 2-field limit" in r for r in proposal.rejected)
    assert proposal.spec.node("solve").demonstrations == s.node("solve").demonstrations
    dropping = [{"field": "task", "new_text": "Write the expression."}]
    lm.routes["PromptUpdate"] = lambda m: {"reasoning": "r", "edits": dropping}
    proposal = PromptOptimizer(lm).step(s, batch_for(s, lm), [])
    assert proposal.spec.node("plan") == s.node("plan")
    assert any("drops the input variable(s) ['question']" in r for r in proposal.rejected)
    long_rules = " ".join(f"Rule {i}: be careful." for i in range(60))  # 1249 characters
    s = spec(nodes=[{**TWO_NODES["nodes"][0], "prompt": {"task": "{{ question }}", "rules": long_rules}},
                    TWO_NODES["nodes"][1]])
    rewrite = [{"field": "rules", "new_text": "x" * 600}]
    lm.routes["PromptUpdate"] = lambda m: {"reasoning": "r", "edits": rewrite}
    proposal = PromptOptimizer(lm, LearningRate(max_change=0.3)).step(s, batch_for(s, lm), [])
    assert proposal.spec.node("plan").prompt.rules == long_rules
    assert any("the learning rate allows 374: 30% of the text" in r for r in proposal.rejected)
    small = [{"field": "rules", "new_text": long_rules + " Rule 60: check twice."}]
    lm.routes["PromptUpdate"] = lambda m: {"reasoning": "r", "edits": small}
    proposal = PromptOptimizer(lm, LearningRate(max_change=0.3)).step(s, batch_for(s, lm), [])
    assert proposal.spec.node("plan").prompt.rules.endswith("check twice.")


def test_tool_optimizer_rewrites_descriptions_and_selection():
    answer = {"reasoning": "r",
              "edits": [{"tool": "calculator", "field": "usage_notes",
                         "new_text": "digits only, like 3*12"}],
              "selection": [{"node": "plan", "add": ["calculator"], "remove": []}]}
    lm = RoutedLM({**ROUTES, "ToolUpdate": lambda m: answer})
    s = spec()
    proposal = ToolOptimizer(lm).step(s, batch_for(s, lm), [])
    assert proposal.spec.tool("calculator").usage_notes == "digits only, like 3*12"
    assert proposal.spec.node("plan").tools == ("calculator",)
    assert "solve called calculator" in lm.calls[-1][1][-1]["content"]  # it saw the calls


def test_workflow_edits_apply_and_an_invalid_one_is_rejected_alone():
    s = spec()
    opt = PipelineOptimizer(RoutedLM({}), LearningRate(max_actions=4))
    proposal = opt.apply(s, [
        AddNode(action="add_node", name="check", after="solve", task="Check the answer.",
                inputs=["answer"], outputs=[{"name": "answer", "type": "int"}]),
        RemoveNode(action="remove_node", name="nowhere"),
        EditNode(action="edit_node", name="plan", field="style", new_text="Terse."),
        AddNode(action="add_node", name="bad", after="plan", task="t", inputs=["verdict"],
                outputs=[{"name": "x"}]),
    ])
    assert [n.name for n in proposal.spec.nodes] == ["plan", "solve", "check"]
    assert proposal.spec.node("plan").prompt.style == "Terse."
    assert proposal.spec.node("solve") == s.node("solve")  # untouched weights
    assert len(proposal.rejected) == 2
    assert "no node 'nowhere'" in proposal.rejected[0]
    assert "reads 'verdict'" in proposal.rejected[1]
    rewired = opt.apply(proposal.spec, [
        Rewire(action="rewire", source="solve", target="check", connect=False),
        Rewire(action="rewire", source="plan", target="check", connect=True)])
    # removing solve -> check first makes check unreachable: rejected; adding plan -> check works
    assert "cannot be reached" in rewired.rejected[0]
    assert ("plan", "check") in [(e.source, e.target) for e in rewired.spec.effective_edges()]
    removed = opt.apply(rewired.spec, [RemoveNode(action="remove_node", name="solve")])
    assert [n.name for n in removed.spec.nodes] == ["plan", "check"] or removed.rejected


class WorseningOptimizer:
    """Proposes a plan prompt that makes the scripted agent answer wrongly."""

    name = "prompt"

    def step(self, spec, batch, memory):
        from localsym.learn.edits import SetPrompt
        from localsym.learn.optim import Proposal

        proposal = Proposal(spec=spec)
        proposal.add(SetPrompt(node="plan", field="style", text="WRONG"))
        return proposal


def scripted_agent_routes():
    def plan(messages):
        wrong = "WRONG" in messages[0]["content"]
        return {"expression": "1+1" if wrong else "3*12"}

    def solve(messages):
        if "expression: 1+1" in messages[-1]["content"]:
            return {"action": {"tool": "finish", "outputs": {"answer": 2}}}
        return ROUTES["solve_step"](messages)

    return {**ROUTES, "plan_output": plan, "solve_step": solve}


def test_rejected_update_restores_the_previous_agent_exactly(tmp_path):
    lm = RoutedLM(scripted_agent_routes())
    s = spec()
    pipe = Pipeline(s, lm)
    # e0 expects another answer: the agent fails it, so the optimizer is asked for an edit
    data = [Example(id=f"e{i}", inputs={"question": "q"}, expected={"answer": 35 if i == 0 else 36})
            for i in range(3)]
    trainer = Trainer(pipe, MetricLoss(numeric_match), {"prompt": WorseningOptimizer()}, lm,
                      TrainConfig(optimizers=("prompt",), batch_size=2), metric=numeric_match,
                      run_dir=tmp_path, log=lambda *_: None)
    state = trainer.fit(data, data[1:])
    assert state.spec == s and state.best_spec == s and pipe.spec == s
    steps = run_events(tmp_path, "step")
    proposed = [c for e in steps for c in e["candidates"]]
    assert proposed and all(c["decision"] == "screened out" for c in proposed)
    assert all(c["minibatch"] < e["parent_minibatch"] for e in steps for c in e["candidates"])
    assert steps[0]["val_before"] == 1.0 and steps[0]["decision"] == "no change"
    assert state.memory[0].accepted is False
    assert PipelineSpec.load(tmp_path / "best_spec.json") == s


class Interrupt(Exception):
    pass


def test_resumed_run_ends_with_the_same_agent(tmp_path):
    counter = {"n": 0}

    def prompt_update(messages):
        counter["n"] += 1
        if counter["n"] == counter.get("fail_at", -1):
            raise Interrupt()
        return {"reasoning": "r", "edits": [{"field": "style", "new_text": f"Style {counter['n']}"}]}

    def run(run_dir, resume=False):
        lm = RoutedLM({**ROUTES, "PromptUpdate": prompt_update})
        trainer = Trainer(Pipeline(spec(), lm), MetricLoss(numeric_match),
                          {"prompt": PromptOptimizer(lm, LearningRate(max_change=1.0))}, lm,
                          TrainConfig(optimizers=("prompt",), batch_size=1, epochs=2, seed=3,
                                      patience=None),
                          metric=numeric_match, run_dir=run_dir, log=lambda *_: None)
        return trainer.fit(data, data[:1], resume=resume)

    # the agent answers 36: every example fails, so every step asks for edits
    data = [Example(id=f"e{i}", inputs={"question": f"q{i}"}, expected={"answer": 35})
            for i in range(3)]
    full = run(tmp_path / "full")
    counter.clear()
    counter.update(n=0, fail_at=7)  # dies inside step 4 (two PromptUpdate calls per step)
    with pytest.raises(Interrupt):
        run(tmp_path / "cut")
    done = json.loads((tmp_path / "cut" / "state.json").read_text())["step"]
    assert 0 < done < full.step
    counter["n"], counter["fail_at"] = 2 * done, -1  # the LM is deterministic per call
    resumed = run(tmp_path / "cut", resume=True)
    assert resumed.spec == full.spec and resumed.best_spec == full.best_spec
    assert resumed.step == full.step == 6


def test_routing_chooses_a_successor_and_a_cycle_stops_at_its_bound():
    routed = PipelineSpec.from_data({
        "inputs": [{"name": "q"}], "max_steps": 5,
        "nodes": [{"name": "triage", "inputs": ["q"], "outputs": [{"name": "kind"}]},
                  {"name": "easy", "inputs": ["q"], "outputs": [{"name": "answer"}]},
                  {"name": "hard", "inputs": ["q"], "outputs": [{"name": "answer"}]}],
        "edges": [{"source": "triage", "target": "easy", "when": "simple questions"},
                  {"source": "triage", "target": "hard", "when": "anything else"},
                  {"source": "hard", "target": "triage", "when": "retry"}]})
    lm = RoutedLM({"triage_output": lambda m: {"kind": "k", "next_step": "hard"},
                   "easy_output": lambda m: {"answer": "e"},
                   "hard_output": lambda m: {"answer": "h"}})
    traj = Pipeline(routed, lm).forward({"q": "?"})
    assert [r.node for r in traj.records] == ["triage", "hard", "triage", "hard", "triage"]
    assert traj.records[0].route == "hard" and "next_step" not in traj.records[0].outputs
    assert traj.error == "stopped after max_steps=5 node runs"
    assert "- easy: simple questions" in traj.records[0].messages[0]["content"]
    lm.routes["triage_output"] = lambda m: {"kind": "k", "next_step": "easy"}
    traj = Pipeline(routed, lm).forward({"q": "?"})
    assert [r.node for r in traj.records] == ["triage", "easy"] and traj.outputs == {"answer": "e"}


def test_agent_and_optimizer_may_be_different_models_and_schedule_cycles(tmp_path):
    student = RoutedLM(ROUTES)
    teacher = RoutedLM({**ROUTES, "PromptUpdate": lambda m: {"reasoning": "r", "edits": []},
                        "ToolUpdate": lambda m: {"reasoning": "r", "edits": [], "selection": []}})
    data = [Example(id=f"e{i}", inputs={"question": "q"}, expected={"answer": 35}) for i in range(2)]
    trainer = Trainer(Pipeline(spec(), student), MetricLoss(numeric_match),
                      {"prompt": PromptOptimizer(teacher), "tool": ToolOptimizer(teacher)},
                      teacher, TrainConfig(optimizers=("prompt", "tool"), schedule="cycle",
                                           batch_size=1), metric=numeric_match, log=lambda *_: None)
    trainer.fit(data, data[:1])
    assert {name for name, _ in student.calls} <= {"plan_output", "solve_step"}
    meta = [name for name, _ in teacher.calls if name not in ("plan_output", "solve_step")]
    assert "plan_output" not in {n for n, _ in teacher.calls}
    # cycle: step 1 runs the prompt optimizer, step 2 the tool optimizer
    assert [n for n in meta if n in ("PromptUpdate", "ToolUpdate")] == \
        ["PromptUpdate", "PromptUpdate", "ToolUpdate"]


def test_paired_test_needs_a_consistent_gain():
    from localsym.learn.gate import permutation_p_value

    assert permutation_p_value([1.0] * 12, [0.0] * 12) < 0.01
    assert permutation_p_value([1, 0, 1, 0], [0, 1, 0, 1]) > 0.4
    assert permutation_p_value([0.5] * 4, [0.5] * 4) == 1.0


def test_a_failing_meta_call_costs_its_example_not_the_run(tmp_path):
    lm = RoutedLM({**ROUTES, "NodeGradientAnswer": lambda m: {"analysis": 1}})  # fails the schema
    data = [Example(id="e0", inputs={"question": "q"}, expected={"answer": 35})]  # a failure
    trainer = Trainer(Pipeline(spec(), lm), MetricLoss(numeric_match),
                      {"prompt": PromptOptimizer(lm)}, lm, TrainConfig(optimizers=("prompt",)),
                      metric=numeric_match, run_dir=tmp_path, log=lambda *_: None)
    state = trainer.fit(data, data)
    (step,) = run_events(tmp_path, "step")
    assert step["decision"] == "no change" and state.step == 1
    assert step["failures"][0].startswith("example e0: InvalidOutputError")


def test_resume_with_another_config_is_refused(tmp_path):
    lm = RoutedLM(ROUTES)
    data = [Example(id="e0", inputs={"question": "q"}, expected={"answer": 36})]

    def trainer(cfg):
        return Trainer(Pipeline(spec(), lm), MetricLoss(numeric_match), {}, lm, cfg,
                       metric=numeric_match, run_dir=tmp_path, log=lambda *_: None)

    trainer(TrainConfig(optimizers=())).fit(data, data)
    from localsym.errors import ConfigError

    with open(tmp_path / "events.jsonl", "a") as f:
        f.write('{"event": "note from another tool"}\n')
    log = (tmp_path / "events.jsonl").read_bytes()
    with pytest.raises(ConfigError, match=r"another training config \(seed: 0 -> 9\)"):
        trainer(TrainConfig(optimizers=(), seed=9)).fit(data, data, resume=True)
    assert (tmp_path / "events.jsonl").read_bytes() == log  # refused before any rewrite


def test_a_resume_with_other_data_agent_or_sampling_is_refused_through_the_api_too(tmp_path):
    """The one resume guard: besides the training config, the checkpoint keeps digests of the
    agent it started from, the examples of each split and the agent's sampling; the Python API
    (which has no config file to fingerprint) is held to them as the CLI is."""
    from localsym.agent.weights import PromptWeights
    from localsym.errors import ConfigError
    from localsym.lm.base import SamplingParams

    lm = RoutedLM(ROUTES)
    data = [Example(id="e0", inputs={"question": "q"}, expected={"answer": 36})]
    other = [Example(id="e0", inputs={"question": "q"}, expected={"answer": 37})]

    def trainer(agent=None, params=None):
        return Trainer(Pipeline(agent or spec(), lm, params=params), MetricLoss(numeric_match),
                       {}, lm, TrainConfig(optimizers=()), metric=numeric_match,
                       run_dir=tmp_path, log=lambda *_: None)

    trainer().fit(data, data)
    with pytest.raises(ConfigError, match="another train, val"):
        trainer().fit(other, other, resume=True)
    with pytest.raises(ConfigError, match="another val"):
        trainer().fit(data, other, resume=True)
    changed = spec().replace(spec().node("plan").model_copy(update={"prompt": PromptWeights(
        task="Another task for {{ question }}.")}))
    with pytest.raises(ConfigError, match="another agent"):
        trainer(agent=changed).fit(data, data, resume=True)
    with pytest.raises(ConfigError, match="another sampling"):
        trainer(params=SamplingParams(max_tokens=7, max_tokens_limit=7)).fit(data, data,
                                                                           resume=True)
    assert trainer().fit(data, data, resume=True).done  # the same run resumes


def test_workflow_schema_only_names_what_exists():
    from pydantic import ValidationError

    schema = PipelineOptimizer.schema(spec())
    ok = schema.model_validate({"reasoning": "r", "actions": [
        {"action": "add_node", "name": "check", "after": "solve", "task": "t",
         "inputs": ["answer", "question"], "outputs": [{"name": "answer"}]},
        {"action": "rewire", "source": "plan", "target": "solve", "connect": False}]})
    assert len(ok.actions) == 2
    for bad in ({"action": "add_node", "name": "x", "after": "nowhere", "task": "t",
                 "inputs": [], "outputs": [{"name": "y"}]},
                {"action": "add_node", "name": "x", "after": "plan", "task": "t",
                 "inputs": ["verdict"], "outputs": [{"name": "y"}]},
                {"action": "remove_node", "name": "ghost"}):
        with pytest.raises(ValidationError):
            schema.model_validate({"reasoning": "r", "actions": [bad]})
    PipelineOptimizer(RoutedLM({}), LearningRate(max_actions=2)).apply(spec(), ok.actions)  # they apply


def test_an_add_node_that_breaks_node_rules_is_rejected_with_its_reason():
    proposal = PipelineOptimizer(RoutedLM({})).apply(spec(), [AddNode(
        action="add_node", name="dup", after="plan", task="t", inputs=["question"],
        outputs=[{"name": "x"}, {"name": "x"}])])
    assert proposal.spec == spec() and "duplicate outputs ['x']" in proposal.rejected[0]


def test_one_edit_per_field_per_step():
    edits = [{"field": "style", "new_text": "Short."}, {"field": "style", "new_text": "Long."}]
    lm = RoutedLM({**ROUTES, "PromptUpdate": lambda m: {"reasoning": "r", "edits": edits}})
    s = spec()
    proposal = PromptOptimizer(lm).step(s, batch_for(s, lm), [])
    assert proposal.spec.node("plan").prompt.style == "Short."
    assert "a second edit of the same field" in " ".join(proposal.rejected)
