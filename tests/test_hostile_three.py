"""Hostile input, round three: the sandbox's last holes (its guard's tables, reads, what it
prints, all it may write), a pattern that would freeze the service, a structure the search
proposes and cannot run, HumanEval's pass that cannot be faked, cassettes of two classes, and
the errors and wrong results a new user met."""

from __future__ import annotations

import json
import time

import pytest

from conftest import ScriptedLM, stub_evolving_agent
from localsym.agent import Pipeline, PipelineSpec, ToolRegistry
from localsym.agent.tools import default_tools
from localsym.data import Example
from localsym.errors import ConfigError
from localsym.sandbox import run_python
from test_hostile import SRC


# 1, 5: the guard cannot be switched off from inside, and a pass cannot be faked ---------------
def test_the_guard_has_no_table_to_clear_and_frames_do_not_reach_its_secret():
    clear = run_python("import sys\nm = sys.modules['__main__']\n"
                       "print(sorted(k for k in vars(m) if not k.startswith('__')))\n"
                       "import socket\ns = socket.socket(socket.AF_UNIX)\n"
                       "s.connect('/run/anything.sock')\n")
    assert not clear.ok and "[]" in clear.output and (
        "socket.connect" in clear.output or "Operation not permitted" in clear.output)
    spy = run_python("import sys\nf = sys._getframe()\nwhile f.f_back: f = f.f_back\n"
                     "print(sorted(f.f_locals))\n")
    assert spy.ok and spy.completed and "secret" not in spy.output


@pytest.mark.parametrize("cheat", [
    "print('localsym-completed-0000')\nimport sys\nsys.exit(0)",
    "import sys, os\nsys.excepthook = lambda *a: os._exit(0)\nraise ValueError('wrong')",
    "import atexit, os\natexit.register(lambda: print('passed'))\nraise SystemExit(0)",
])
def test_an_early_exit_a_printed_marker_or_an_excepthook_is_no_completion(cheat):
    result = run_python(cheat)
    assert not result.completed


def test_humaneval_cannot_be_gamed_by_exiting_before_the_tests():
    from localsym.metrics.humaneval import humaneval

    expected = {"entry_point": "add", "test": "def check(f):\n    assert f(1, 2) == 3\n"}
    assert humaneval({"code": "def add(a, b):\n    return a + b\n"}, expected) == 1.0
    for code in ("def add(a, b):\n    return 0\nimport os\nos._exit(0)\n",
                 "import sys\ndef add(a, b):\n    return 0\nprint(open(__file__).read())\n"
                 "sys.exit(0)\n",
                 "def add(a, b):\n    return 0\nimport sys\n"
                 "sys.excepthook = lambda *a: print('ok')\n"):
        assert humaneval({"code": code}, expected) == 0.0


# 1, 2: reads are confined; output and disk are bounded -----------------------------------------
def test_the_child_reads_only_python_the_system_and_its_directory():
    result = run_python("import os\ntry:\n    open('/etc/passwd').read()\n    print('READ')\n"
                        "except OSError as e:\n    print('refused', e.errno)\n"
                        "open('mine', 'w').write('x')\nprint(open('mine').read())\n")
    assert result.ok and "READ" not in result.output and "refused" in result.output


def test_a_flood_of_output_does_not_fill_the_callers_memory():
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    result = run_python("import sys\nwhile True:\n    sys.stdout.write('x' * (1 << 20))\n",
                        timeout=3)
    assert result.timed_out and len(result.output) <= 2000 and time.monotonic() - start < 10
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown < 64 << 10  # KiB: the caller kept a bounded tail, not the flood


def test_what_the_child_writes_in_all_is_capped():
    result = run_python("for i in range(200):\n    open(f'f{i}', 'wb').write(b'x' * (1 << 20))\n",
                        timeout=10)
    assert not result.ok and ("No space left" in result.output or
                              "too large" in result.output)


# 3: a pattern that backtracks forever is refused when the spec loads --------------------------
def test_a_nested_unbounded_pattern_is_refused_and_bound_values_are_checked_under_a_timeout():
    data = {"inputs": [{"name": "q"}], "nodes": [{"name": "n", "inputs": ["q"], "outputs": [
        {"name": "a", "pattern": "(a+)+b"}]}]}
    with pytest.raises(ConfigError, match="exponential time"):
        PipelineSpec.from_data(data)
    from localsym.agent.program import fits
    from localsym.agent.weights import FieldSpec

    field = FieldSpec.model_construct(name="a", type="str", choices=(), pattern="(a+)+b")
    start = time.monotonic()
    assert not fits("a" * 34 + "c", field) and time.monotonic() - start < 2


# 4: every structural candidate the search can propose runs -------------------------------------
def test_every_kind_of_structural_candidate_runs_on_the_stub_model():
    from localsym.learn.propose.structure import structural_edits
    from localsym.lm import open_lm

    registry = default_tools()

    @registry.register
    def is_short(answer: str) -> bool:
        """Whether the answer is short."""
        return len(answer) < 40

    specs = [PipelineSpec.from_data({
        "inputs": [{"name": "question"}],
        "tools": [{"name": "calculator", "description": "c"}, {"name": "is_short",
                                                              "description": "s"}],
        "nodes": [{"name": "solve", "inputs": ["question"], "outputs": [
            {"name": "answer"}, {"name": "n", "type": "int"}], **extra}]})
        for extra in ({}, {"tools": ["calculator"], "bind": {"n": "calculator"},
                           "reasoning": 80})]
    lm = open_lm("stub")
    ran = 0
    for spec in specs:
        for child in structural_edits(spec, registry):
            for grand in [child] + structural_edits(child.spec, registry)[:6]:
                traj = Pipeline(grand.spec, lm, registry).forward(
                    {"question": "What is 2 + 3? <b>\x07</b>"})
                assert traj.records, grand.text
                ran += 1
    assert ran > 20


def test_a_reasoning_draft_on_a_node_whose_outputs_are_all_bound_runs():
    spec = PipelineSpec.from_data({
        "inputs": [{"name": "question"}], "tools": [{"name": "calculator", "description": "c"}],
        "nodes": [{"name": "solve", "inputs": ["question"], "tools": ["calculator"],
                   "reasoning": 80, "arg_from": {"calculator.expression": "question"},
                   "bind": {"answer": "calculator"},
                   "outputs": [{"name": "answer", "type": "int"}]}]})
    traj = Pipeline(spec, ScriptedLM(lambda m, p: "{}")).forward({"question": "2+3"})
    assert traj.outputs == {"answer": 5} and traj.ok


# 6: cassettes of two classes' tests of one name are two cassettes -----------------------------
def test_cassettes_are_keyed_by_the_whole_test_id(tmp_path):
    from localsym.pytest_plugin import cassette_dir, open_cassette

    a = cassette_dir(tmp_path / "test_x.py", "TestA::test_same")
    b = cassette_dir(tmp_path / "test_x.py", "TestB::test_same")
    assert a != b
    a.mkdir(parents=True)
    (a / "lm.json").write_text('{"identity": ')  # cut short
    with pytest.raises(ConfigError, match="damaged"):
        open_cassette(a, record=False)
    (a / "lm.json").write_text('{"name": "m"}')  # no identity
    with pytest.raises(ConfigError, match="damaged"):
        open_cassette(a, record=False)


# 7, 8: errors a user causes are one clear line; no wrong result with success ------------------
def test_the_python_api_refuses_wrong_types_in_one_line(tmp_path):
    import localsym
    from localsym.data import load_table
    from localsym.lm import open_lm

    spec = PipelineSpec.load(SRC / "agent.yaml")
    lm = open_lm("stub")
    val = [Example(id="v", inputs={"question": "2 apples?"}, expected={"answer": 2})]
    (tmp_path / "afile").write_text("x")
    calls = [lambda: lm.call_batch("notalist"), lambda: Pipeline(None, lm),
             lambda: Pipeline(spec, "stub", default_tools()),
             lambda: load_table(SRC / "data" / "val.jsonl", "x"),
             lambda: localsym.train(spec, "notalist", val, lm=lm),
             lambda: localsym.train(spec, val, val, lm=lm, tools=["x"]),
             lambda: localsym.evaluate(Pipeline(spec, lm), "notalist"),
             lambda: localsym.evaluate(Pipeline(spec, lm), []),
             lambda: localsym.evaluate(Pipeline(spec, lm), [Example(
                 id="x", inputs={"question": "q"}, expected={"nope": 1})]),
             lambda: ToolRegistry().register(42),
             lambda: localsym.train(spec, val, val, lm=lm, run_dir=tmp_path / "afile")]
    for call in calls:
        with pytest.raises(ConfigError) as err:
            call()
        assert "\n" not in str(err.value) and "Fix:" in str(err.value)
    # plain dicts are examples, a model's name is a model
    best = localsym.train(spec, [e.model_dump() for e in val], val, lm="stub",
                          config={"max_steps": 1, "optimizers": ["structure"]}, log=lambda *_: 0)
    assert isinstance(best, PipelineSpec)


def test_a_built_in_metric_cannot_be_replaced_and_glue_overflow_is_a_glue_error():
    from localsym.agent import chain
    from localsym.agent.glue import GlueError, Round, ToInt
    from localsym.metrics import register_metric

    with pytest.raises(ConfigError, match="built-in"):
        register_metric("exact_match", lambda o, e: 1.0)
    with pytest.raises(ConfigError, match="not a function"):
        register_metric("mine", None)
    with pytest.raises(GlueError):
        chain.run((ToInt(), Round(digits=2)), "9" * 401)


def test_the_service_refuses_true_as_a_version_and_feedback_for_no_output(tmp_path):
    from fastapi.testclient import TestClient

    from localsym.deploy.serve import create_app

    evolving = stub_evolving_agent(tmp_path, SRC)
    try:
        client = TestClient(create_app(evolving), raise_server_exceptions=False,
                            base_url="http://127.0.0.1")
        assert client.post("/rollback", json={"version": True}).status_code == 422
        sid = client.post("/run", json={"inputs": {"question": "2 apples?"}}).json()["id"]
        bad = client.post("/feedback", json={"id": sid, "expected": {"nope": 1}})
        assert bad.status_code == 400 and "never outputs" in bad.json()["error"]
        evolving.store.write("UPDATE versions SET spec = 'not json' WHERE id = 1")
        damaged = client.get("/versions/1")
        assert damaged.status_code in (400, 404, 409) and "Fix:" in damaged.json()["error"]
    finally:
        evolving.close()


def test_a_metric_that_hangs_costs_its_examples_and_says_what_the_run_will_pay(caplog):
    from localsym.metrics import score, with_timeout

    def slow(outputs, expected):
        time.sleep(2)
        return 1.0

    timed = with_timeout(slow, 0.05)
    with caplog.at_level("WARNING", logger="localsym.metrics"):
        scores = [score(timed, {}, {"a": 1}).score for _ in range(4)]
    assert scores == [0.0] * 4  # each timeout costs its example, never the run
    said = [r.getMessage() for r in caplog.records if "in a row" in r.getMessage()]
    assert len(said) == 1 and "every example of every candidate" in said[0] and \
        "metric_timeout" in said[0]


def test_localsym_run_finds_the_tools_of_the_config_beside_the_agent(tmp_path):
    import shutil
    import subprocess
    import sys

    task = tmp_path / "task"
    shutil.copytree(SRC.parent / "word_sorting", task)
    proc = subprocess.run([sys.executable, "-m", "localsym.cli", "run", str(task / "bound.yaml"),
                           "question=Sort the following words alphabetically: b a",
                           "--model", "stub"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["answer"] == "a b"
    (task / "config.yaml").unlink()
    proc = subprocess.run([sys.executable, "-m", "localsym.cli", "run", str(task / "bound.yaml"),
                           "question=x", "--model", "stub"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "--tool tools.py:sort_words" in proc.stderr


# the generated families: wrong types over the API, damaged files, pathological patterns --------
def test_the_generated_api_files_and_patterns_sweep_breaks_no_promise():
    import sys

    from test_hostile import ROOT

    sys.path.insert(0, str(ROOT / "scripts"))
    from fuzz_errors import run_api_generated

    found = run_api_generated(cases=4, seed=3)
    assert {"api train", "api Pipeline", "api lm.call_batch", "damaged state.json",
            "damaged cassette lm.json", "pattern in an output"} <= set(found)
    for name, row in found.items():
        assert not row["broken"], (name, row["broken"][:3])


def test_a_cache_of_planted_pickle_counters_is_reported_and_closes(tmp_path, caplog):
    import diskcache

    from localsym.lm.store import JsonStore

    planted = diskcache.Cache(str(tmp_path))  # diskcache's own default: pickle mode
    planted.set("__count__:hits", ["not", "a", "count"])
    planted.set("k", {"a": 1})
    planted.close()
    store = JsonStore(tmp_path)
    assert store.get("k") is None  # never unpickled
    store.add_counts({"hits": 2})  # the close of a cached LM adds its counts
    assert store.counts()["hits"] == 2
    store.close()
