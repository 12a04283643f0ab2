"""The typed edit algebra: every kind applies purely and describes itself; every proposer's
candidate is its parent with its edits applied; edits survive the log as data; merge refuses
colliding targets; a checkpoint written before edits were typed is refused with one line."""

from __future__ import annotations

import json

import pytest

from conftest import RoutedLM
from localsym.agent import PipelineSpec
from localsym.agent.node import Check, Controller, InputBinding, NodeSpec, RoleSpec, Vote
from localsym.agent.program import Program
from localsym.agent.tools import default_tools
from localsym.agent.weights import Demonstration, PromptWeights
from localsym.data import Example
from localsym.errors import ConfigError
from localsym.learn import MetricLoss, TrainConfig, Trainer, default_optimizers
from localsym.learn.edits import (EDIT_KINDS, AddNode, AddRole, AttachTool, BindOutput,
                                  DetachTool, DropCall, EditError, GrowTeam, RemoveNode,
                                  RemoveRole, Rewire, SetArgPattern, SetCheck, SetController,
                                  SetDemonstrations, SetOutputPattern, SetProgram, SetPrompt,
                                  SetReasoning,
                                  SetToolChoice, SetToolText, SetVote, UnbindOutput, WriteCall,
                                  apply_edits, collide, parse_edits)
from localsym.learn.events import CandidateRecord
from localsym.learn.propose.merge import merge
from localsym.learn.propose.proposer import Proposer
from localsym.learn.search import Candidate
from localsym.metrics import numeric_match
from test_learn_logic import ROUTES, batch_for, spec as two_nodes

TEAM = {"name": "w", "inputs": [{"name": "q"}], "nodes": [
    {"name": "write", "inputs": ["q"], "outputs": [{"name": "story"}],
     "roles": [{"name": "writer", "writes": ["story"]}, {"name": "editor"}],
     "controller": {"finisher": "editor", "outputs_from": "writer"}}]}


def every_kind(s: PipelineSpec) -> list:
    """One edit of every kind that applies to the two-node spec (or the team), in order."""
    demo = Demonstration(inputs={"question": "q"}, outputs={"expression": "1+1"})
    extra = NodeSpec(name="check", inputs=("answer",), outputs=({"name": "ok"},))
    return [
        AttachTool(node="plan", tool="calculator"), SetToolChoice(node="plan", choice="required"),
        SetArgPattern(tool="calculator", arg="expression", pattern="[0-9]+"),
        SetArgPattern(tool="calculator", arg="expression", pattern=None),
        WriteCall(node="plan", tool="calculator", args={"expression": InputBinding(
            input="question", via=({"op": "after", "delimiter": ":"},))}),
        DropCall(node="plan", tool="calculator"),
        BindOutput(node="solve", output="answer", binding="calculator"),
        UnbindOutput(node="solve", output="answer"), DetachTool(node="plan", tool="calculator"),
        SetToolText(tool="calculator", field="usage_notes", text="digits"),
        SetPrompt(node="plan", field="rules", text="Be brief."),
        SetDemonstrations(node="plan", demonstrations=(demo,), origin="labeled", ids=("e1",)),
        SetOutputPattern(node="plan", output="expression", pattern="[0-9+*]{1,20}"),
        SetReasoning(node="plan", chars=80), SetVote(node="plan", vote=Vote(samples=3)),
        SetVote(node="plan", vote=None),
        AddNode(after="solve", node_spec=extra), Rewire(source="plan", target="check",
                                                        connect=True),
        RemoveNode(name="check"),
        SetProgram(node="plan", program=Program(outputs={
            "expression": "question | numbers | join('*')"}))]


def test_every_kind_applies_purely_describes_itself_and_round_trips_as_data():
    s = two_nodes()
    before = s.model_dump_json()
    edits, spec = every_kind(s), s
    for edit in edits:
        new = edit.apply(spec)
        assert new != spec, edit.describe()
        assert isinstance(edit.describe(), str) and "\n" not in edit.describe()
        spec = new
    assert s.model_dump_json() == before  # the parent is never changed
    assert apply_edits(s, edits) == spec
    logged = json.loads(json.dumps([e.model_dump(mode="json") for e in edits]))
    assert parse_edits(logged) == edits  # the log keeps them typed, exactly
    team = PipelineSpec.from_data(TEAM)
    team_edits = [AddRole(node="write", role=RoleSpec(name="critic")),
                  RemoveRole(node="write", role="editor"), SetController(node="write",
                                                                          max_turns=6),
                  SetPrompt(node="write", role="writer", field="style", text="Vivid.")]
    grown = apply_edits(team, team_edits)
    assert [r.name for r in grown.node("write").roles] == ["writer", "critic"]
    assert grown.node("write").team.finisher is None  # the removed finisher is forgotten
    plain = PipelineSpec.from_data({**TEAM, "nodes": [{"name": "write", "inputs": ["q"],
                                                       "outputs": [{"name": "story"}]}]})
    grow = GrowTeam(node="write", roles=(RoleSpec(name="a", writes=("story",)), RoleSpec(
        name="b")), controller=Controller(max_turns=3))
    assert [r.name for r in grow.apply(plain).node("write").roles] == ["a", "b"]
    used = {type(e).__name__ for e in edits + team_edits + [grow]} | {"SetCheck"}
    assert used == {t.__name__ for t in EDIT_KINDS.values()}  # every kind is exercised


@pytest.mark.parametrize("edit, message", [
    (AttachTool(node="nowhere", tool="calculator"), "no node 'nowhere'"),
    (AttachTool(node="plan", tool="nope"), "no declared tool 'nope'"),
    (WriteCall(node="plan", tool="calculator", args={"expression": "question"}),
     "not 'tool.argument' of one of its tools"),
    (SetPrompt(node="plan", field="task", text="no variable"), "drops the input variable"),
    (SetPrompt(node="plan", field="task", text="x" * 2001), "limit 2000"),
    (RemoveRole(node="plan", role="x"), "has no roles"),
    (Rewire(source="plan", target="solve", connect=True), "nothing to change"),
    (SetCheck(node="plan", check=Check(tool="calculator", args={"expression": "nope"})),
     "which are not its inputs or outputs"),
])
def test_an_edit_that_cannot_apply_says_why_in_one_line(edit, message):
    s = two_nodes(nodes=[{**two_nodes().nodes[0].model_dump(),
                          "prompt": {"task": "Read {{ question }}."}}, two_nodes().nodes[1]])
    with pytest.raises(EditError) as err:
        edit.apply(s)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_merge_combines_edits_whose_targets_do_not_collide():
    s = two_nodes()
    a = [SetPrompt(node="plan", field="rules", text="Short.")]
    b = [SetToolText(tool="calculator", field="usage_notes", text="digits")]
    c = [SetReasoning(node="plan", chars=40)]
    assert not collide(a, b) and collide(a, c)
    merged = merge(s, a, b)
    assert merged == apply_edits(s, a + b) == apply_edits(s, b + a)
    assert merge(s, a, c) is None
    assert collide([RemoveNode(name="solve")], [Rewire(source="plan", target="solve",
                                                       connect=False)])


def proposer_children(s: PipelineSpec):
    """Every candidate every proposer makes of ``s`` in one step (scripted optimizers)."""
    routes = {**ROUTES,
              "PromptUpdate": lambda m: {"reasoning": "r", "edits": [
                  {"field": "rules", "new_text": "Use digits."}]},
              "ToolUpdate": lambda m: {"reasoning": "r", "edits": [
                  {"tool": "calculator", "field": "usage_notes", "new_text": "like 3*12"}],
                  "selection": [{"node": "plan", "add": ["calculator"], "remove": []}],
                  "bindings": []},
              "WorkflowUpdate": lambda m: {"reasoning": "r", "actions": [
                  {"action": "edit_node", "name": "plan", "field": "style",
                   "new_text": "Terse."}]}}
    lm = RoutedLM(routes)
    batch = batch_for(s, lm, expected=35)
    optimizers = default_optimizers(lm)
    config = TrainConfig(max_candidates=200)
    train = [Example(id=f"e{i}", inputs={"question": f"{i} times 3"},
                     expected={"answer": 3 * i}) for i in range(8)]
    proposer = Proposer(optimizers, config, default_tools(), numeric_match)
    from localsym.agent import Pipeline
    successes = [Pipeline(s, lm).forward({"question": f"q{i}"}) for i in range(4)]
    return proposer(s, 1, ["prompt", "tool", "pipeline"], batch.gradients,
                    [type("S", (), {"trajectory": t, "example": Example(
                        id="e", inputs={"question": "q"}, expected={"answer": 35})})()
                     for t in batch.trajectories], train, successes, [], [])


def test_every_proposers_candidate_is_its_parent_with_its_edits_applied():
    s = two_nodes()
    proposed = proposer_children(s)
    sources = {c.source for c in proposed.candidates}
    assert {"prompt", "tool", "pipeline", "demonstrations", "structure"} <= sources, sources
    for c in proposed.candidates:
        assert c.edits and all(not isinstance(e, str) for e in c.edits)
        assert c.spec == apply_edits(s, c.edits), c.text()
    # the merge source too: two candidates of different sources whose targets differ
    prompt = next(c for c in proposed.candidates if c.source == "prompt")
    other = next(c for c in proposed.candidates if c.source == "structure"
                 and not collide(c.edits, prompt.edits))
    assert merge(s, prompt.edits, other.edits) == apply_edits(s, prompt.edits + other.edits)


def test_an_earlier_versions_log_still_reads_and_its_checkpoint_is_refused(tmp_path):
    old = CandidateRecord.model_validate({"source": "structure", "edits": [
        "attach tool calculator to solve"], "val": 1.0})
    assert old.edits == ["attach tool calculator to solve"]  # shown as it was written
    new = Candidate.of(two_nodes(), "structure", [AttachTool(node="plan", tool="calculator")])
    again = CandidateRecord.model_validate_json(new.summary().model_dump_json())
    assert again.edits == new.edits and again.edits[0].describe().startswith("attach tool")
    lm = RoutedLM({"solve_output": lambda m: {"answer": 1}})
    s = PipelineSpec.from_data({"inputs": [{"name": "question"}], "nodes": [
        {"name": "solve", "inputs": ["question"], "outputs": [{"name": "answer", "type": "int"}]}]})
    data = [Example(id="e0", inputs={"question": "q"}, expected={"answer": 1})]

    def trainer():
        from localsym.agent import Pipeline
        return Trainer(Pipeline(s, lm), MetricLoss(numeric_match), {}, lm,
                       TrainConfig(optimizers=("structure",), max_steps=1), metric=numeric_match,
                       run_dir=tmp_path, log=lambda *_: None)

    trainer().fit(data, data)
    state = json.loads((tmp_path / "state.json").read_text())
    state.pop("format")  # as a checkpoint of the version before typed edits has it
    for m in state["memory"]:
        m["changes"] = [e if isinstance(e, str) else "an edit" for e in m.pop("edits")]
    state["done"] = False
    (tmp_path / "state.json").write_text(json.dumps(state))
    with pytest.raises(ConfigError) as err:
        trainer().fit(data, data, resume=True)
    assert "before edits were typed" in str(err.value) and "\n" not in str(err.value)


def test_the_team_and_prompt_edits_keep_other_roles_and_nodes(tmp_path):
    team = PipelineSpec.from_data(TEAM)
    edited = SetPrompt(node="write", role="editor", field="task", text="Check.").apply(team)
    assert edited.node("write").roles[0] == team.node("write").roles[0]
    assert edited.node("write").roles[1].prompt == PromptWeights(task="Check.")
