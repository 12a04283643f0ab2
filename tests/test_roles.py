"""Nodes with several roles (issue 25): the roles take turns under a controller, the
conversation is recorded, gradients reach each role, typed edits change one role at a time, a
resumed run ends the same, and a one-call node is exactly what it was. Scripted models: the
mechanics, not the quality."""

from __future__ import annotations

import json

import pytest

from conftest import RoutedLM, listed, run_events
from localsym.learn.optim import LearningRate
from localsym.lm.base import SamplingParams
from localsym.agent import Pipeline, PipelineSpec
from localsym.agent.tools import default_tools
from localsym.data import Example
from localsym.errors import ConfigError
from localsym.learn import MetricLoss, PromptOptimizer, TrainConfig, Trainer
from localsym.learn.propose.structure import structural_edits
from localsym.agent.node import RoleSpec
from localsym.agent.weights import PromptWeights
from localsym.learn.edits import AddRole, RemoveRole, SetController
from localsym.learn.backward import backward
from localsym.learn.optim import Batch, PipelineOptimizer
from localsym.metrics import exact_match

WRITER = {"name": "writer", "description": "writes the story", "writes": ["story"],
          "prompt": {"task": "Write the story."}}
EDITOR = {"name": "editor", "description": "reviews it", "prompt": {"task": "Review."}}


def team(**controller) -> PipelineSpec:
    return PipelineSpec.from_data({
        "name": "story", "description": "Write a story.", "inputs": [{"name": "topic"}],
        "nodes": [{"name": "write", "inputs": ["topic"], "outputs": [{"name": "story"}],
                   "roles": [WRITER, EDITOR], "controller": controller or None}]})


def scripted(editor_done_at: int = 99, next_choices=None):
    """Writer drafts 'draft N'; the editor says 'fix N' and is done at its editor_done_at-th
    turn; the model controller picks from ``next_choices`` in turn."""
    counts = {"writer": 0, "editor": 0, "next": 0}

    def writer(messages):
        counts["writer"] += 1
        return {"done": False, "story": f"draft {counts['writer']}", "message": "here"}

    def editor(messages):
        counts["editor"] += 1
        return {"done": counts["editor"] >= editor_done_at, "message": f"fix {counts['editor']}"}

    def choose(messages):
        counts["next"] += 1
        return {"next": next_choices[(counts["next"] - 1) % len(next_choices)]}
    return RoutedLM({"write_writer_turn": writer, "write_editor_turn": editor,
                     "write_next": choose}), counts


def test_turns_in_order_stop_when_the_finisher_is_done_and_the_conversation_is_recorded():
    lm, _ = scripted(editor_done_at=2)
    traj = Pipeline(team(max_turns=8), lm).forward({"topic": "a cat"})
    record = traj.records[0]
    assert [t.role for t in record.turns] == ["writer", "editor", "writer", "editor"]
    assert traj.outputs == {"story": "draft 2"} and traj.calls == 4
    assert record.turns[-1].done and record.turns[1].message == "fix 1"
    # the editor saw the writer's draft: the conversation is shared
    assert "draft 1" in record.turns[1].messages[-1]["content"]
    assert "[writer] story: draft 1" in record.turns[2].messages[-1]["content"]


def test_a_turn_limit_bounds_a_chatty_pair():
    lm, counts = scripted()  # the editor is never satisfied
    traj = Pipeline(team(max_turns=3), lm).forward({"topic": "a cat"})
    assert len(traj.records[0].turns) == 3 and counts["writer"] + counts["editor"] == 3
    assert traj.outputs == {"story": "draft 2"} and traj.ok


def test_rule_random_and_model_policies():
    lm, _ = scripted()
    rule = team(policy="rule", next={"writer": "writer", "editor": "writer"}, max_turns=3)
    assert [t.role for t in Pipeline(rule, lm).forward({"topic": "x"}).records[0].turns] == \
        ["writer", "writer", "writer"]
    lm, _ = scripted()
    chosen = [t.role for t in Pipeline(team(policy="random", max_turns=6), lm)
              .forward({"topic": "x"}).records[0].turns]
    again = [t.role for t in Pipeline(team(policy="random", max_turns=6), scripted()[0])
             .forward({"topic": "x"}).records[0].turns]
    assert chosen == again and chosen[0] == "writer" and len(chosen) == 6  # seeded per turn
    lm, counts = scripted(next_choices=["writer", "editor", "writer", "stop"])
    traj = Pipeline(team(policy="model", max_turns=8), lm).forward({"topic": "x"})
    record = traj.records[0]
    assert [t.role for t in record.turns] == ["writer", "editor", "writer"]
    assert all(t.chosen_by == "model" for t in record.turns) and counts["next"] == 4
    assert traj.calls == 7  # three turns and four choices


def test_a_checker_role_runs_a_declared_tool_on_the_draft_and_hands_its_verdict_back():
    tools = default_tools()

    @tools.register
    def long_enough(story: str) -> bool:
        """Whether the story has at least three words."""
        return len(story.split()) >= 3

    spec = PipelineSpec.from_data({
        "name": "story", "inputs": [{"name": "topic"}],
        "tools": [{"name": "long_enough", "description": "Checks."}],
        "nodes": [{"name": "write", "inputs": ["topic"], "outputs": [{"name": "story"}],
                   "roles": [WRITER, {"name": "checker", "tool": "long_enough",
                                      "args": {"story": "story"}}]}]})
    stories = iter(["short", "now a longer one"])
    lm = RoutedLM({"write_writer_turn": lambda m: {"done": False, "story": next(stories),
                                                   "message": ""}})
    traj = Pipeline(spec, lm, tools).forward({"topic": "x"})
    turns = traj.records[0].turns
    assert [(t.role, t.message, t.done) for t in turns] == [
        ("writer", "", False), ("checker", "false", False), ("writer", "", False),
        ("checker", "true", True)]
    assert traj.outputs == {"story": "now a longer one"} and traj.calls == 2


def test_bad_teams_are_one_clear_error():
    base = {"name": "s", "inputs": [{"name": "topic"}],
            "nodes": [{"name": "w", "inputs": ["topic"], "outputs": [{"name": "story"}]}]}
    for roles, why in (([EDITOR], "no role of node 'w' writes"),
                       ([WRITER, {**EDITOR, "writes": ["title"]}], "not outputs of the node"),
                       ([WRITER, WRITER], "duplicate roles"),
                       ([WRITER, {"name": "c", "tool": "nope", "args": {"x": "story"}}],
                        "not declared")):
        data = json.loads(json.dumps(base))
        data["nodes"][0]["roles"] = roles
        with pytest.raises(ConfigError, match=why):
            PipelineSpec.from_data(data)


def gradient_answer(messages):
    text = messages[-1]["content"]
    who = text.split('The member is "')[1].split('"')[0] if 'The member is "' in text \
        else "controller"
    return {"analysis": f"about {who}", "tool_feedback": "none", "requirement": "nothing",
            "suggestions": [{"field": "task", "suggestion": f"better {who}"}]}


def test_gradients_reach_each_role_and_the_controller_and_the_optimizer_edits_one_role():
    lm, _ = scripted(next_choices=["writer", "editor", "stop"])
    spec = team(policy="model", max_turns=6)
    lm.routes["NodeGradientAnswer"] = gradient_answer
    traj = Pipeline(spec, lm).forward({"topic": "x"})
    loss = MetricLoss(exact_match)(traj, Example(id="e", inputs={"topic": "x"},
                                                 expected={"story": "a real story"}))
    grads = backward(traj, loss, spec, lm, "e", workflow=False)
    assert sorted((g.node, g.role, g.analysis) for g in grads.nodes) == [
        ("write", "controller", "about controller"), ("write", "editor", "about editor"),
        ("write", "writer", "about writer")]
    lm.routes["PromptUpdate"] = lambda m: {"reasoning": "r", "edits": [
        {"field": "style", "new_text": "Vivid." if "member writer" in m[-1]["content"]
         else "Kind."}]}
    proposal = PromptOptimizer(lm, LearningRate(max_change=1.0)).step(spec, Batch(trajectories=[traj],
                                                                   gradients=[grads]), [])
    roles = {r.name: r for r in proposal.spec.node("write").roles}
    assert roles["writer"].prompt.style == "Vivid." and roles["editor"].prompt.style == "Kind."
    assert roles["writer"].prompt.task == "Write the story."  # the rest of each role kept
    assert {e.describe() for e in proposal.edits} == {"nodes.write.roles.writer.prompt.style",
                                                   "nodes.write.roles.editor.prompt.style"}
    assert spec.node("write").roles[0].prompt.style == ""  # the parent is untouched


def test_each_team_edit_is_local_and_the_parent_stays_as_it_was():
    spec = team(max_turns=4)
    added = AddRole(node="write", role=RoleSpec(name="critic", description="finds holes",
                                                prompt=PromptWeights(task="Find plot holes."))
                    ).apply(spec)
    assert [r.name for r in added.node("write").roles] == ["writer", "editor", "critic"]
    assert added.node("write").roles[:2] == spec.node("write").roles
    removed = RemoveRole(node="write", role="critic").apply(added)
    assert removed == spec
    edited = SetController(node="write", policy="model", max_turns=6).apply(spec)
    assert edited.node("write").team.policy == "model" and edited.node("write").roles == \
        spec.node("write").roles
    with pytest.raises(ConfigError, match="writes"):
        RemoveRole(node="write", role="writer").apply(spec)
    # the workflow optimizer's schema offers role actions only where a node has roles
    names = str(PipelineOptimizer.schema(spec).model_json_schema())
    assert "add_role" in names and "edit_controller" in names
    plain = PipelineSpec.from_data({"inputs": [{"name": "q"}], "nodes": [
        {"name": "n", "inputs": ["q"], "outputs": [{"name": "a"}]}]})
    assert "add_role" not in str(PipelineOptimizer.schema(plain).model_json_schema())
    # code-listed: a plain node grows into a writer and an editor; a team loses a role, changes
    # its turn limit or its policy
    grown = listed(structural_edits(plain, default_tools()))
    team_spec = grown["n: grow into writer and editor (up to 4 turns)"]
    assert [r.name for r in team_spec.node("n").roles] == ["writer", "editor"]
    assert team_spec.final_outputs() == plain.final_outputs()
    listed_team = set(listed(structural_edits(spec, default_tools())))
    assert {"write: remove role editor", "write: turn limit 2", "write: turn limit 6",
            "write: controller policy model"} <= listed_team


def test_a_resumed_run_with_a_team_ends_with_the_same_agent(tmp_path):
    counter = {"n": 0}

    class Interrupt(Exception):
        pass

    def prompt_update(messages):
        counter["n"] += 1
        if counter["n"] == counter.get("fail_at", -1):
            raise Interrupt()
        return {"reasoning": "r", "edits": [{"field": "style",
                                             "new_text": f"Style {counter['n']}"}]}

    data = [Example(id=f"e{i}", inputs={"topic": f"t{i}"}, expected={"story": "never"})
            for i in range(3)]

    def run(run_dir, resume=False):
        lm, _ = scripted()
        lm.routes.update({"NodeGradientAnswer": gradient_answer, "PromptUpdate": prompt_update})
        trainer = Trainer(Pipeline(team(max_turns=2), lm), MetricLoss(exact_match),
                          {"prompt": PromptOptimizer(lm, LearningRate(max_change=1.0))}, lm,
                          TrainConfig(optimizers=("prompt",), batch_size=1, epochs=2, seed=3,
                                      patience=None),
                          metric=exact_match, run_dir=run_dir, log=lambda *_: None)
        return trainer.fit(data, data[:1], resume=resume)

    full = run(tmp_path / "full")
    step = run_events(tmp_path / "full", "step")[0]
    assert step["conversations"][0]["turns"][0]["role"] == "writer"  # the report shows them
    counter.clear()
    counter.update(n=0, fail_at=5)
    with pytest.raises(Interrupt):
        run(tmp_path / "cut")
    done = json.loads((tmp_path / "cut" / "state.json").read_text())["step"]
    assert 0 < done < full.step
    counter["n"], counter["fail_at"] = 2 * done, -1  # two roles: two PromptUpdate calls a step
    resumed = run(tmp_path / "cut", resume=True)
    assert resumed.spec == full.spec and resumed.step == full.step


def test_a_one_call_node_is_exactly_what_it_was():
    """A node without roles: the same messages and schema as before roles existed, so the same
    cache keys and answers (the key of this call was recorded before the roles change)."""
    from localsym.lm import CachedLM
    from conftest import ScriptedLM

    spec = PipelineSpec.from_data({"name": "arith", "description": "Multiply.",
                                   "inputs": [{"name": "question"}],
                                   "nodes": [{"name": "solve", "inputs": ["question"],
                                              "prompt": {"task": "Answer."},
                                              "outputs": [{"name": "answer", "type": "int"}]}]})
    seen = []

    class Recording(ScriptedLM):
        def complete(self, messages, schema, params):
            seen.append(CachedLM(self, cache_dir="/nonexistent").key(messages, schema, params))
            return super().complete(messages, schema, params)

    # the sampling Pipeline defaulted to when the key was recorded (its default is now the
    # config's, AGENT_PARAMS)
    params = SamplingParams(max_tokens=256, max_tokens_limit=1024)
    Pipeline(spec, Recording(lambda m, p: '{"answer": 36}'), params=params).forward(
        {"question": "3 x 12?"})
    assert seen == [KEY_BEFORE_ROLES]


KEY_BEFORE_ROLES = "d14368a484ff8c622f8ade9070f236717cea783b1f53b264741575bcc314acbf"  # at e9cb672
