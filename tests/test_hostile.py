"""Promises under hostile input (issue 15): one line, exit 2, no traceback, nothing computed
lost; the service answers 4xx, never 500. On the stub model: the model does not matter here."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import stub_evolving_agent

ROOT = Path(__file__).resolve().parent.parent
LOCALSYM = [str(Path(sys.executable).parent / "localsym")]
SRC = ROOT / "examples" / "object_counting"


def cli(*args, timeout=300, cwd=None):
    return subprocess.run(LOCALSYM + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def one_line_error(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [l for l in proc.stderr.strip().splitlines()
             if not l.startswith("localsym: warning:")]
    assert len(lines) == 1 and "Fix:" in lines[0], proc.stderr
    return lines[0]


def stub_task(tmp_path: Path, rows: int = 4, **config) -> Path:
    for split in ("train", "val", "test"):
        lines = (SRC / "data" / f"{split}.jsonl").read_text().split("\n")[:rows]
        (tmp_path / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    shutil.copy(SRC / "agent.yaml", tmp_path / "agent.yaml")
    data = {"agent": "agent.yaml", "metric": "numeric_match", "models": {"agent": "stub"},
            "dataset": {"train": "train.jsonl", "val": "val.jsonl", "test": "test.jsonl"},
            "train": {"batch_size": 2, "max_steps": 2}, **config}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def step_events(run_dir: Path) -> list[dict]:
    return [json.loads(l) for l in (run_dir / "events.jsonl").read_text("utf-8").split("\n")
            if l.strip() and json.loads(l)["event"] == "step"]


# 1 ---------------------------------------------------------------------------------------------
def test_line_separators_inside_records_survive_the_log_and_resume(tmp_path):
    from localsym.files import append_jsonl, read_jsonl

    log = tmp_path / "events.jsonl"
    records = [{"event": "step", "step": i, "text": f"a\u2028b\x1cc\u0085d{i}"} for i in range(3)]
    for r in records:
        append_jsonl(log, r)
    assert read_jsonl(log) == records
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"inputs": {"q": "x\u2028y\x1cz"}}, ensure_ascii=False) + "\n",
                    "utf-8")
    from localsym.data import load_jsonl

    assert load_jsonl(data)[0].inputs["q"] == "x\u2028y\x1cz"


# 2 ---------------------------------------------------------------------------------------------
def test_a_second_process_cannot_train_into_a_locked_run_directory(tmp_path):
    config = stub_task(tmp_path)
    from localsym.runner import lock_run_dir

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from localsym.runner import lock_run_dir; "
        f"lock_run_dir(Path({str(tmp_path / 'run')!r})); print('locked', flush=True); "
        "time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        line = one_line_error(cli("train", config, "--run-dir", tmp_path / "run", "--quiet"))
        assert "is in use by localsym pid" in line
    finally:
        holder.kill()
        holder.wait()
    assert callable(lock_run_dir)
    assert cli("train", config, "--run-dir", tmp_path / "run", "--quiet").returncode == 0


# 3 ---------------------------------------------------------------------------------------------
def test_resume_refuses_a_config_or_data_that_differ(tmp_path):
    config = stub_task(tmp_path, train={"batch_size": 2, "max_steps": 1})
    assert cli("train", config, "--run-dir", tmp_path / "run", "--quiet").returncode == 0
    other = tmp_path / "other.yaml"
    data = yaml.safe_load(config.read_text())
    other.write_text(yaml.safe_dump({**data, "metric": "exact_match"}))
    line = one_line_error(cli("train", other, "--resume", tmp_path / "run", "--quiet"))
    assert "metric" in line and "differ" in line
    with open(tmp_path / "train.jsonl", "a") as f:  # the data edited in place
        f.write(json.dumps({"id": "new", "inputs": {"question": "one apple?"},
                            "expected": {"answer": 1}}) + "\n")
    line = one_line_error(cli("train", "--resume", tmp_path / "run", "--quiet"))
    assert "dataset.train" in line
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["name"]  # untouched


# 4 ---------------------------------------------------------------------------------------------
def test_expected_fields_the_agent_never_outputs_are_an_error_and_overlap_a_warning(tmp_path):
    config = stub_task(tmp_path)
    rows = [json.loads(l) for l in (tmp_path / "train.jsonl").read_text().split("\n") if l]
    (tmp_path / "bad.jsonl").write_text("".join(
        json.dumps({**r, "expected": {"count": 3}}) + "\n" for r in rows))
    data = yaml.safe_load(config.read_text())
    data["dataset"]["train"] = "bad.jsonl"
    config.write_text(yaml.safe_dump(data))
    line = one_line_error(cli("train", config, "--run-dir", tmp_path / "r1", "--quiet"))
    assert "expects ['count'], which the agent never outputs" in line
    # some validation examples also in training: a warning (the gate rewards memorizing them)
    (tmp_path / "both.jsonl").write_text((tmp_path / "val.jsonl").read_text() +
                                         (tmp_path / "train.jsonl").read_text())
    data["dataset"]["train"] = "both.jsonl"
    config.write_text(yaml.safe_dump(data))
    proc = cli("train", config, "--run-dir", tmp_path / "r2", "--quiet")
    assert proc.returncode == 0 and "also in the training split" in proc.stderr
    # a few examples given as both splits (issue 38): the few-example way, no warning
    data["dataset"]["train"] = data["dataset"]["val"]
    config.write_text(yaml.safe_dump(data))
    proc = cli("train", config, "--run-dir", tmp_path / "r3", "--quiet")
    assert proc.returncode == 0 and "also in the training split" not in proc.stderr


# 5 ---------------------------------------------------------------------------------------------
def test_serving_another_agent_from_an_existing_deployment_is_refused(tmp_path):
    from localsym.config import load_deploy_config
    from localsym.errors import ConfigError
    from localsym.deploy.evolve import EvolvingAgent

    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text((SRC / "agent.yaml").read_text())
    second.write_text((ROOT / "examples" / "arithmetic" / "agent.yaml").read_text())
    for path in (first, second):
        config, base = load_deploy_config(path)
        config = config.model_copy(update={"models": config.models.model_copy(
            update={"agent": "stub"})})
        if path == first:
            EvolvingAgent(tmp_path / "dep", config, base, log=lambda _: None).close()
        else:
            with pytest.raises(ConfigError, match="was started with another agent"):
                EvolvingAgent(tmp_path / "dep", config, base, log=lambda _: None)


# 6, 7 ------------------------------------------------------------------------------------------
def test_files_that_are_not_utf8_and_lone_surrogates_are_one_line(tmp_path):
    config = stub_task(tmp_path)
    (tmp_path / "latin.yaml").write_bytes(config.read_bytes() + b"\n# caf\xe9\n")
    assert "is not UTF-8 text" in one_line_error(cli("train", tmp_path / "latin.yaml"))
    (tmp_path / "train.jsonl").write_bytes(b'{"inputs": {"question": "caf\xe9"}}\n')
    assert "not UTF-8" in one_line_error(cli("train", config, "--run-dir", tmp_path / "r"))
    (tmp_path / "train.jsonl").write_text('{"inputs": {"question": "a\\ud800b"}}\n')
    assert "lone surrogate" in one_line_error(cli("train", config, "--run-dir", tmp_path / "r"))
    line = one_line_error(cli("run", tmp_path / "agent.yaml", '{"question": "a\\ud800b"}',
                              "--model", "stub"))
    assert "lone surrogate" in line


# 8 ---------------------------------------------------------------------------------------------
def test_runaway_prompt_templates_are_stopped(tmp_path):
    spec = yaml.safe_load((SRC / "agent.yaml").read_text())
    for text in ("{% for i in range(100000000) %}x{% endfor %}",
                 "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
                 "{{ 'ab' * 900000000 }}"):
        spec["nodes"][0]["prompt"]["task"] = text
        (tmp_path / "agent.yaml").write_text(yaml.safe_dump(spec))
        start = time.perf_counter()
        line = one_line_error(cli("run", tmp_path / "agent.yaml", "question=hi", "--model", "stub"))
        assert "failed to render" in line and time.perf_counter() - start < 60


# 9 ---------------------------------------------------------------------------------------------
def test_report_handles_budget_stopped_torn_and_damaged_runs(tmp_path):
    config = stub_task(tmp_path, budget={"calls": 1})
    proc = cli("train", config, "--run-dir", tmp_path / "run", "--quiet")
    assert proc.returncode == 3, proc.stderr  # stopped by its budget: a normal outcome
    assert cli("report", tmp_path / "run").returncode == 0
    html = (tmp_path / "run" / "report.html").read_text()
    assert "Stopped after step 0: budget of 1 calls spent" in html and "--resume" in html
    log = tmp_path / "run" / "events.jsonl"
    with open(log, "a") as f:
        f.write(json.dumps({"event": "step", "decision": "<b>x</b>"}) + "\n")
        f.write('{"event": "step", "st')  # torn
    (tmp_path / "run" / "summary.json").write_text('{"name": "x", "val_bef')
    assert cli("report", tmp_path / "run").returncode == 0
    html = (tmp_path / "run" / "report.html").read_text()
    assert "<b>x</b>" not in html and "1 record(s) of events.jsonl are not events" in html


# 10 --------------------------------------------------------------------------------------------
def test_service_bounds_and_serve_arguments(tmp_path):
    from fastapi.testclient import TestClient

    from localsym.deploy.serve import create_app

    evolving = stub_evolving_agent(tmp_path, SRC)
    agent = tmp_path / "agent.yaml"
    try:
        client = TestClient(create_app(evolving), raise_server_exceptions=False,
                            base_url="http://127.0.0.1:8765")
        assert client.post("/rollback", json={"version": 10**23}).status_code == 422
        # no web page can drive the loopback service: a rebinding page's Host, a foreign
        # Origin, a simple cross-site POST with no JSON content type
        rebound = client.get("/versions", headers={"host": "attacker.example"})
        assert rebound.status_code == 421 and "Fix:" in rebound.json()["error"]
        assert client.get("/versions", headers={"host": "localhost:8765"}).status_code == 200
        assert client.get("/versions", headers={"host": "[::1]:8765"}).status_code == 200
        foreign = client.post("/evolve", content="", headers={
            "origin": "http://attacker.example", "content-type": "text/plain"})
        assert foreign.status_code == 403
        assert client.post("/evolve", headers={"sec-fetch-site": "cross-site",
                                               "content-type": "application/json"}
                           ).status_code == 403
        simple = client.post("/evolve", content="", headers={"content-type": "text/plain"})
        assert simple.status_code == 415 and "application/json" in simple.json()["error"]
        assert client.post("/rollback", content='{"version": 1}').status_code == 415
        same = client.post("/rollback", json={"version": 1},
                           headers={"origin": "http://127.0.0.1:8765"})
        assert same.status_code == 200
        assert client.get(f"/versions/{10**23}").status_code in (404, 422)
        raw = client.post("/run", content='{"inputs": {"question": "a\\ud800b"}}',
                          headers={"content-type": "application/json"})
        assert raw.status_code in (400, 422) and "lone surrogate" in raw.json()["error"]
    finally:
        evolving.close()
    assert "not a TCP port" in one_line_error(cli("serve", agent, "--port", "99999"))
    (tmp_path / "afile").write_text("x")
    assert "is a file" in one_line_error(cli("serve", agent, "--dir", tmp_path / "afile"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = cli("serve", agent, "--port", busy.getsockname()[1], "--dir", tmp_path / "d2")
    assert "cannot serve on" in one_line_error(proc) and "serving" not in proc.stderr


# 11, 12 ----------------------------------------------------------------------------------------
def test_context_overflow_corrupt_cache_and_registry_names(tmp_path):
    from localsym.lm.store import JsonStore

    proc = cli("run", SRC / "agent.yaml", "question=" + "many apples " * 3000,
               "--max-tokens", "16")
    assert "exceeds the context" in one_line_error(proc)
    cache = tmp_path / "cache"
    JsonStore(cache / "calls").close()
    (cache / "calls" / "cache.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 5000)
    line = one_line_error(cli("cache", "stats", "--cache-dir", cache))
    assert "corrupt" in line and "cache clear" in line
    cleared = cli("cache", "clear", "--cache-dir", cache)
    assert cleared.returncode == 0 and "rebuilt it empty" in cleared.stdout
    assert cli("cache", "stats", "--cache-dir", cache).returncode == 0
    assert "install takes a registry name" in one_line_error(
        cli("models", "install", "../../etc/passwd"))


# generated bad inputs over the CLI verbs -------------------------------------------------------
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
junk = st.one_of(text, st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
                 st.sampled_from(["{", "[1, 2", "a: [", "\u2028", "nodes: 3", "{% for %}",
                                  "agent: ../../../etc/passwd", "null", "1e999"]))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished stub run whose files no failing command may change."""
    tmp = tmp_path_factory.mktemp("finished")
    config = stub_task(tmp, train={"batch_size": 2, "max_steps": 1})
    assert cli("train", config, "--run-dir", tmp / "run", "--quiet").returncode == 0
    return tmp / "run"


def _snapshot(run_dir: Path) -> dict:
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in run_dir.rglob("*")
            if p.is_file() and p.name not in ("lock", "report.html")}


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=junk, verb=st.sampled_from(["train", "resume", "eval", "run", "report", "serve"]))
def test_generated_bad_files_give_one_line_errors(tmp_path, finished_run, content, verb):
    bad = tmp_path / "bad.yaml"
    bad.write_text(content, "utf-8", errors="surrogateescape")
    before = _snapshot(finished_run)
    args = {"train": ["train", bad, "--run-dir", tmp_path / "r", "--quiet"],
            "resume": ["train", bad, "--resume", finished_run, "--quiet"],
            "eval": ["eval", bad, bad], "run": ["run", bad, "q=1", "--model", "stub"],
            "report": ["report", tmp_path], "serve": ["serve", bad, "--dir", tmp_path / "d"]}
    proc = cli(*args[verb], timeout=120)
    one_line_error(proc)
    assert _snapshot(finished_run) == before  # nothing of an existing run changed


def test_generated_requests_never_get_a_500():
    sys.path.insert(0, str(ROOT / "scripts"))
    from fuzz_errors import run_service

    for name, row in run_service(per_endpoint=10, seed=1).items():
        assert not row["broken"], (name, row["broken"][:2])
        assert all(code < 500 for code in row["statuses"]), (name, row["statuses"])


def test_replay_reads_a_cache_without_writing_to_it(tmp_path):
    import os

    from conftest import ScriptedLM
    from localsym.errors import CacheMissError
    from localsym.lm import CachedLM
    from localsym.lm.base import Call, Message, SamplingParams
    from pydantic import BaseModel

    class Note(BaseModel):
        text: str

    def answer(messages, params):  # one small answer, one over diskcache's 32 kB file limit
        return json.dumps({"text": "x" * (40000 if "big" in messages[-1].content else 3)})

    calls = [Call([Message(role="user", content=q)], Note, SamplingParams()) for q in ("a", "big")]
    recorder = CachedLM(ScriptedLM(answer), cache_dir=tmp_path)
    recorded = [recorder.complete(*c).text for c in calls]
    recorder.close()
    calls_dir = tmp_path / "calls"
    before = {p.relative_to(calls_dir): p.read_bytes() for p in calls_dir.rglob("*") if p.is_file()}
    os.chmod(calls_dir, 0o555)
    try:
        replay = CachedLM(ScriptedLM(lambda m, p: 1 / 0), cache_dir=tmp_path, mode="replay")
        assert [replay.complete(*c).text for c in calls] == recorded
        with pytest.raises(CacheMissError):
            replay.complete([Message(role="user", content="new")], Note, SamplingParams())
        replay.close()
    finally:
        os.chmod(calls_dir, 0o755)
    after = {p.relative_to(calls_dir): p.read_bytes() for p in calls_dir.rglob("*") if p.is_file()}
    assert after == before  # not a byte written, no side file created
