"""Hostile input, round two (issue 23): every limit holds, nothing a user wrote is overwritten,
no 500s, no wrong answer with exit status 0, no traceback where one line is promised. On the stub
model: the model does not matter here."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import stub_evolving_agent
from localsym.errors import ConfigError
from test_hostile import LOCALSYM, SRC, cli, one_line_error, stub_task

ROOT = Path(__file__).resolve().parent.parent


# 3: limits that could be got around ------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "{{ 'x'|center(1500000000) }}", "{{ ([('x'*200000)]*200000)|join }}",
    "{{ ((((9**64)**64)**64)**64)**64 }}", "{{ 'x'.ljust(10**9) }}",
    "{{ ('x'*200000)|replace('x', 'y'*200000) }}", "{{ (9**64) * (9**64) * (9**64) }}x",
])
def test_runaway_templates_end_in_one_clear_error_at_once(text):
    from localsym.templates import render_text

    started = time.monotonic()
    try:
        out = render_text(text)
        assert len(out) <= 200_000  # a bounded result is fine too
    except ConfigError as err:
        assert "failed to render" in str(err) and "\n" not in str(err)
    assert time.monotonic() - started < 5


def test_a_pattern_or_schema_that_would_take_all_memory_is_refused_before_compiling(tmp_path):
    from pydantic import BaseModel, Field

    from localsym.agent import PipelineSpec
    from localsym.lm.schema_index import IndexStore, repeat_states, schema_regex

    data = {"inputs": [{"name": "q"}], "nodes": [{"name": "n", "outputs": [
        {"name": "a", "pattern": "[a-z ]{1,30000}"}]}]}
    with pytest.raises(ConfigError, match="would not fit in memory"):
        PipelineSpec.from_data(data)

    class Huge(BaseModel):
        text: str = Field(max_length=100_000)

    with pytest.raises(ConfigError, match="unrolls into about"):  # unrolled into the index
        IndexStore(tmp_path).index_for(Huge, "", {}, lambda: pytest.fail("compiled anyway"),
                                       relax=False)
    # as the decoder runs it, the bound is counted, not unrolled (localsym/lm/bounded.py)
    assert repeat_states(schema_regex(Huge, "")) == 1  # one unbounded repeat


# 4: nothing a user wrote is overwritten --------------------------------------------------------
def test_a_run_directory_that_is_not_a_run_is_refused(tmp_path):
    config = stub_task(tmp_path)
    mine = tmp_path / "summary.json"
    mine.write_text("my own notes")
    line = one_line_error(cli("train", config, "--run-dir", tmp_path, "--quiet"))
    assert "not a run directory" in line
    assert mine.read_text() == "my own notes" and "stub" in (tmp_path / "config.yaml").read_text()
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "is a file" in one_line_error(cli("train", config, "--run-dir", afile, "--quiet"))


def test_a_config_without_a_name_names_its_run_after_its_folder(tmp_path):
    (tmp_path / "my task").mkdir()
    config = stub_task(tmp_path / "my task")
    proc = cli("train", "config.yaml", "--quiet", cwd=config.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = [p.name for p in (config.parent / "runs").iterdir()]
    assert len(runs) == 1 and runs[0].startswith("my_task-"), runs


# 5: no 500s ------------------------------------------------------------------------------------
def test_requests_that_cannot_be_stored_are_400s_never_500s(tmp_path):
    from fastapi.testclient import TestClient

    from localsym.deploy.serve import create_app

    evolving = stub_evolving_agent(tmp_path, SRC)
    json_body = {"content-type": "application/json"}
    try:
        client = TestClient(create_app(evolving), raise_server_exceptions=False,
                            base_url="http://127.0.0.1")
        sid = client.post("/run", json={"inputs": {"question": "2 apples?"}}).json()["id"]
        for body in ('{"inputs": {"question": "x", "a\\ud800": 1}}',
                     '{"inputs": {"question": NaN}}', '{"inputs": {"question": [Infinity]}}'):
            resp = client.post("/run", content=body, headers=json_body)
            assert resp.status_code in (400, 422), (body, resp.status_code, resp.text)
        for body in ('{"id": "%s", "text": "a\\ud800"}' % sid, '{"id": "a\\udc00", "score": 1}',
                     '{"id": "%s", "expected": {"answer": NaN}}' % sid):
            resp = client.post("/feedback", content=body, headers=json_body)
            assert 400 <= resp.status_code < 500, (body, resp.status_code, resp.text)
        assert client.get(f"/samples/{sid}").status_code == 200  # nothing bad was stored
    finally:
        evolving.close()


# 6: no wrong answer with exit status 0 ---------------------------------------------------------
def test_a_metric_that_exits_or_hangs_costs_its_examples_not_the_run(tmp_path):
    (tmp_path / "metrics.py").write_text(
        "import sys, time\n"
        "def leave(outputs, expected):\n    sys.exit(0)\n"
        "def hang(outputs, expected):\n    time.sleep(60)\n")
    for name, timeout in (("leave", 30), ("hang", 0.2)):
        (tmp_path / name).mkdir()
        config = stub_task(tmp_path / name, rows=2, metric=f"{tmp_path}/metrics.py:{name}",
                           metric_timeout=timeout, train={"batch_size": 2, "max_steps": 1,
                                                          "max_candidates": 1, "screen_size": 2})
        started = time.monotonic()
        proc = cli("train", config, "--quiet", "--run-dir", tmp_path / name / "run")
        assert proc.returncode == 0, proc.stderr[-1500:]
        assert "validation 0.000 -> 0.000" in proc.stdout, proc.stdout  # every example scored 0
        assert "metric" in proc.stderr  # and the reason was said
        assert time.monotonic() - started < 120


def test_eval_refuses_what_train_refuses_and_counts_are_positive(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"inputs": {"question": "q"}, "expected": {"nope": 1}}) + "\n")
    line = one_line_error(cli("eval", SRC / "agent.yaml", data, "--metric", "exact_match",
                              "--model", "stub"))
    assert "never outputs" in line
    for args in (["eval", SRC / "agent.yaml", data, "--limit", "-3"],
                 ["run", SRC / "agent.yaml", "q=1", "--max-tokens", "0"]):
        proc = cli(*args, "--model", "stub")
        assert proc.returncode == 2 and "positive" in proc.stderr and "Traceback" not in \
            proc.stderr


@pytest.mark.parametrize("csv", ["id,q,q\n1,a,b\n", "id,q\n1,a,extra\n", "id,q,a\n1\n"])
def test_ragged_or_duplicate_column_csvs_are_one_line(tmp_path, csv):
    from localsym.data import load_table

    path = tmp_path / "d.csv"
    path.write_text(csv)
    with pytest.raises(ConfigError) as err:
        load_table(path, {"id": "id", "inputs": {"question": "q"}})
    assert "column" in str(err.value)


def test_the_api_refuses_an_unknown_loss_and_estimate_never_calls_the_model_first(tmp_path):
    import localsym
    from localsym.data import Example

    rows = [Example(id="1", inputs={"question": "2?"}, expected={"answer": 2})]
    with pytest.raises(ConfigError, match="unknown loss 'bogus'"):
        localsym.train(SRC / "agent.yaml", rows, rows, lm=localsym.open_lm("stub"),
                       loss="bogus", metric="numeric_match")
    config = stub_task(tmp_path, dataset={"generate": {"count": 8}})
    line = one_line_error(cli("train", config, "--estimate"))
    assert "has not written yet" in line and not (tmp_path / "cache").exists()


def test_an_always_equal_object_does_not_pass_humaneval():
    from localsym.metrics import metric

    problem = json.loads((ROOT / "examples" / "humaneval" / "data" / "train.jsonl").open()
                         .readline())["expected"]
    cheat = (f"class Yes:\n    def __eq__(self, other):\n        return True\n"
             f"    __hash__ = None\n\ndef {problem['entry_point']}(*args, **kwargs):\n"
             f"    return Yes()\n")
    subclass = (f"class Yes(int):\n    def __eq__(self, other):\n        return True\n"
                f"def {problem['entry_point']}(*args, **kwargs):\n    return Yes(0)\n")
    score = metric("humaneval")
    assert score({"code": cheat}, problem) == 0.0
    assert score({"code": subclass}, problem) == 0.0
    assert score({"code": problem["reference"]}, problem) == 1.0


# 7: the cache's corruption handling goes past the header ---------------------------------------
def test_a_cache_damaged_past_its_header_and_a_tampered_index(tmp_path):
    from localsym.lm.store import JsonStore

    cache = tmp_path / "cache"
    store = JsonStore(cache / "calls")
    for i in range(300):
        store.set(f"k{i}", {"v": "x" * 200})
    store.close()
    db = cache / "calls" / "cache.db"
    data = bytearray(db.read_bytes())
    data[4096:len(data) - 100] = b"\x5a" * (len(data) - 4196)  # the header intact, pages not
    db.write_bytes(bytes(data))
    (tmp_path / "t").mkdir()
    for args in (["cache", "stats"], ["train", stub_task(tmp_path / "t"), "--quiet",
                                      "--run-dir", tmp_path / "run"]):
        proc = cli(*args, "--cache-dir", cache) if args[0] == "cache" else \
            __import__("subprocess").run(LOCALSYM + [str(a) for a in args], capture_output=True,
                                         text=True, env={**os.environ,
                                                         "LOCALSYM_CACHE_DIR": str(cache)})
        line = one_line_error(proc)
        assert "corrupt" in line and "cache clear" in line
    indexes = cache / "indexes"
    indexes.mkdir()
    (indexes / "x.index").write_bytes(b"tampered")
    cleared = cli("cache", "clear", "--cache-dir", cache)
    assert cleared.returncode == 0 and not list(indexes.glob("*.index"))


def test_a_tampered_compiled_index_is_recompiled_not_used(tmp_path):
    from localsym.lm.schema_index import MAGIC, IndexStore

    store = IndexStore(tmp_path)
    path = store.path("k")
    path.write_bytes(MAGIC + b"\x00" * 32 + b"not an index")
    assert store.load("k") is None and not path.exists()


def test_a_read_only_healthy_cache_is_not_called_corrupt(tmp_path):
    from localsym.lm.store import JsonStore

    store = JsonStore(tmp_path / "calls")
    store.set("k", {"v": 1})
    store.close()
    os.chmod(tmp_path / "calls", 0o555)
    try:
        if os.access(tmp_path / "calls", os.W_OK):
            pytest.skip("running as a user whom permissions do not stop (root)")
        assert JsonStore.healthy(tmp_path / "calls")
    finally:
        os.chmod(tmp_path / "calls", 0o755)


# 8, 9, 10: workflows, files and names ----------------------------------------------------------
def test_a_workflow_where_every_node_has_an_outgoing_edge_is_refused():
    from localsym.agent import PipelineSpec

    data = {"inputs": [{"name": "q"}], "max_steps": 4,
            "nodes": [{"name": "a", "inputs": ["q"], "outputs": [{"name": "x"}]},
                      {"name": "b", "inputs": ["x"], "outputs": [{"name": "y"}]}],
            "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "a"}]}
    with pytest.raises(ConfigError, match="no node gives the answer"):
        PipelineSpec.from_data(data)


def test_more_inputs_that_were_tracebacks_are_one_line(tmp_path):
    deep = "{" + '"a": {' * 200 + "}" * 201
    assert "nested" in one_line_error(cli("run", SRC / "agent.yaml", deep, "--model", "stub"))
    assert "not a function" in one_line_error(cli(
        "run", SRC / "agent.yaml", "question=1", "--model", "stub", "--tool",
        "collections:OrderedDict"))
    (tmp_path / "s").mkdir()
    config = stub_task(tmp_path / "s", dataset={"path": "train.jsonl", "split": [0, 0, 0]})
    assert "split" in one_line_error(cli("train", config, "--quiet"))
    spec = yaml.safe_load((SRC / "agent.yaml").read_text())
    spec["nodes"][0]["prompt"]["task"] = "a\ud800b"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(spec))
    assert "surrogate" in one_line_error(cli("run", bad, "question=1", "--model", "stub"))
    gguf = tmp_path / "crafted.gguf"
    gguf.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (0).to_bytes(8, "little") +
                     (1).to_bytes(8, "little") + (2**62).to_bytes(8, "little"))
    proc = cli("generate", "hi", "--model", gguf)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_an_emptied_event_log_resumes_and_a_report_of_a_bad_best_spec(tmp_path):
    config = stub_task(tmp_path, train={"batch_size": 2, "max_steps": 2})
    run = tmp_path / "run"
    assert cli("train", config, "--run-dir", run, "--quiet").returncode == 0
    (run / "events.jsonl").write_text("")
    resumed = cli("train", "--resume", run, "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-1500:]
    (run / "best_spec.json").write_text('{"nodes": "not a spec"}')
    assert cli("report", run).returncode == 0
    (run / "best_spec.json").write_text("[" * 5000 + "]" * 5000)
    proc = cli("report", run)
    assert proc.returncode in (0, 2) and "Traceback" not in proc.stderr


def test_an_output_directory_that_cannot_be_written_is_one_line(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")  # a directory under a file: no one can create it, root included
    line = one_line_error(cli("init", afile / "task"))
    assert "writable" in line or "is a file" in line
    (tmp_path / "t").mkdir()
    config = stub_task(tmp_path / "t", train={"batch_size": 2, "max_steps": 1})
    run = tmp_path / "run"
    assert cli("train", config, "--run-dir", run, "--quiet").returncode == 0
    (run / "report.html").mkdir()  # where the report goes, a directory
    assert "writable" in one_line_error(cli("report", run))


# beyond the list: a generated sweep, in CI ------------------------------------------------------
def test_a_generated_sweep_of_the_cli_the_service_and_the_api_breaks_no_promise():
    sys.path.insert(0, str(ROOT / "scripts"))
    from fuzz_errors import run_api, run_cli, run_service

    for part in (run_cli(per_verb=3, seed=7), run_service(per_endpoint=8, seed=7),
                 run_api(cases=6, seed=7)):
        for name, row in part.items():
            assert not row["broken"], (name, row["broken"][:3])
