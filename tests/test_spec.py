"""Agent specs: round trips and each invalid spec's clear error (pure logic)."""

from __future__ import annotations

import pytest

from localsym.agent import Pipeline, PipelineSpec
from localsym.errors import ConfigError

from conftest import ScriptedLM

TWO_NODES = {
    "name": "arith", "description": "Answer arithmetic questions.",
    "inputs": [{"name": "question"}],
    "tools": [{"name": "calculator", "description": "Evaluate an expression.", "usage_notes": "digits only"}],
    "nodes": [
        {"name": "plan", "prompt": {"task": "Write the expression for {{ question }}."},
         "inputs": ["question"], "outputs": [{"name": "expression"}]},
        {"name": "solve", "prompt": {"task": "Compute it.", "rules": "Use the calculator."},
         "inputs": ["expression"], "tools": ["calculator"],
         "outputs": [{"name": "answer", "type": "int", "description": "the number"}],
         "demonstrations": [{"inputs": {"expression": "2+2"}, "outputs": {"answer": 4}}]},
    ]}


def spec(**changes):
    return PipelineSpec.from_data({**TWO_NODES, **changes})


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_spec_round_trips_without_loss(tmp_path, suffix):
    original = spec(edges=[{"source": "plan", "target": "solve", "when": "always"}], max_steps=4)
    path = original.save(tmp_path / f"agent{suffix}")
    loaded = PipelineSpec.load(path)
    assert loaded == original
    assert loaded.model_dump() == original.model_dump()
    assert PipelineSpec.load(loaded.save(tmp_path / f"again{suffix}")) == original


@pytest.mark.parametrize("changes, message", [
    ({"edges": [{"source": "plan", "target": "check"}]}, "edge plan -> check names unknown node 'check'"),
    ({"tools": []}, "uses tool 'calculator', which is not declared"),
    ({"nodes": [TWO_NODES["nodes"][0], {**TWO_NODES["nodes"][1], "inputs": ["draft"]}]},
     "reads 'draft', which neither the example inputs"),
    ({"nodes": [{**TWO_NODES["nodes"][0], "inputs": ["answer"]}, TWO_NODES["nodes"][1]]},
     "reads 'answer', but the node producing it (solve) never runs before it"),
    ({"edges": [{"source": "plan", "target": "solve"}, {"source": "solve", "target": "plan"}]},
     "cycle through ['plan', 'solve'] without a bound; set max_steps"),
    ({"nodes": [TWO_NODES["nodes"][0], TWO_NODES["nodes"][0]]}, "duplicate node names ['plan']"),
    ({"edges": [{"source": "solve", "target": "plan"}]}, "cannot be reached from the start node"),
    ({"start": "nowhere"}, "start node 'nowhere' is not a node"),
    ({"nodes": []}, "nodes: Tuple should have at least 1 item"),
])
def test_each_invalid_spec_gives_its_clear_error(changes, message):
    with pytest.raises(ConfigError) as err:
        spec(**changes)
    assert message in str(err.value)
    assert "invalid agent spec" in str(err.value)


def test_bounded_cycle_is_valid_and_bad_files_are_clear_errors(tmp_path):
    # a cycle with a way out: solve goes back to plan when wrong, or on to the answer
    three = {"nodes": [*TWO_NODES["nodes"], {"name": "report", "inputs": ["answer"],
                                             "outputs": [{"name": "final"}]}]}
    looped = spec(**three, edges=[{"source": "plan", "target": "solve"},
                                  {"source": "solve", "target": "plan", "when": "if wrong"},
                                  {"source": "solve", "target": "report", "when": "if right"}],
                  max_steps=6)
    assert looped.max_steps == 6 and looped.final_outputs() == ["final"]
    # a cycle with no way out has no node that gives the answer (it validated, then crashed)
    with pytest.raises(ConfigError, match="no node gives the answer"):
        spec(edges=[{"source": "plan", "target": "solve"},
                    {"source": "solve", "target": "plan", "when": "if wrong"}], max_steps=6)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        PipelineSpec.load(bad)
    with pytest.raises(ConfigError, match="cannot read agent spec"):
        PipelineSpec.load(tmp_path / "missing.json")


def test_parameters_are_the_trainable_weights():
    pipe = Pipeline(spec(), ScriptedLM(lambda m, p: "{}"))
    params = {p.name: p for p in pipe.parameters()}
    assert params["nodes.plan.prompt.task"].value == "Write the expression for {{ question }}."
    assert params["nodes.solve.prompt.rules"].kind == "prompt"
    assert params["tools.calculator.usage_notes"].value == "digits only"
    assert params["nodes.solve.tools"].value == ("calculator",)
    assert len(params["nodes.solve.demonstrations"].value) == 1
    assert params["workflow"].value["edges"] == [("plan", "solve")]


def test_pipeline_refuses_a_declared_tool_without_code():
    from localsym.agent import ToolRegistry

    with pytest.raises(ConfigError, match="unknown tool 'calculator'"):
        Pipeline(spec(), ScriptedLM(lambda m, p: "{}"), tools=ToolRegistry())


def test_the_readme_spec_and_config_examples_are_valid():
    import re
    from pathlib import Path

    import yaml

    from localsym.config import RunConfig

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", readme, re.S)]
    (spec_block,) = [b for b in blocks if "nodes" in b]
    (config_block,) = [b for b in blocks if "dataset" in b]
    parsed = PipelineSpec.from_data(spec_block)
    assert [n.name for n in parsed.nodes] == ["plan", "solve"]
    assert parsed.node("solve").tool_choice == "required"
    assert RunConfig.model_validate(config_block).metric == "numeric_match"
