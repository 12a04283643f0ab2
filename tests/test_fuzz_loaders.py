"""Property-based fuzzing of the loaders of user files (agent spec, run config, dataset): every
input ends in a valid object or in a ConfigError, never in another exception."""

from __future__ import annotations

import json

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localsym.agent import PipelineSpec
from localsym.config import load_config
from localsym.data import load_jsonl
from localsym.errors import ConfigError
from test_spec import TWO_NODES

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=20)
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def mutations(base: dict):
    """The valid spec with one key replaced by anything, or deleted, at the top or in a node."""
    keys = st.sampled_from(sorted(base))
    return st.one_of(
        st.tuples(keys, json_values).map(lambda kv: {**base, kv[0]: kv[1]}),
        keys.map(lambda k: {key: v for key, v in base.items() if key != k}),
        st.tuples(st.sampled_from(["name", "prompt", "inputs", "outputs", "tools", "edges",
                                   "demonstrations", "max_tool_steps", "tool_choice"]),
                  json_values).map(lambda kv: {**base, "nodes": [
                      {**base["nodes"][0], kv[0]: kv[1]}, base["nodes"][1]]}),
        json_values)


@FUZZ
@given(mutations(TWO_NODES))
def test_spec_loader_gives_a_spec_or_a_clear_error(data):
    try:
        spec = PipelineSpec.from_data(data)
    except ConfigError as err:
        assert str(err).startswith("invalid agent spec") and err.fix
        return
    assert PipelineSpec.from_data(json.loads(spec.to_json())) == spec


@FUZZ
@given(st.text(max_size=200))
def test_spec_text_of_any_shape(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("s") / "agent.yaml"
    path.write_text(text)
    try:
        PipelineSpec.load(path)
    except ConfigError:
        pass


@FUZZ
@given(st.dictionaries(st.sampled_from(["agent", "dataset", "metric", "loss", "train", "models",
                                         "sampling", "cache", "learning_rate", "name", "x"]),
                       json_values, max_size=6))
def test_config_loader_gives_a_config_or_a_clear_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("c") / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    try:
        load_config(path)
    except ConfigError as err:
        assert "config" in str(err)


@FUZZ
@given(st.lists(json_values | st.text(max_size=30), max_size=5))
def test_dataset_loader_gives_examples_or_a_clear_error(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("d") / "data.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows))
    try:
        for ex in load_jsonl(path):
            assert isinstance(ex.inputs, dict)
    except ConfigError as err:
        assert str(path) in str(err)
