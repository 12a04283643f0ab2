"""Generated bad inputs against every CLI verb and every service endpoint (run by hand; the
figures go to RELIABILITY.md; tests/test_hostile*.py run a small sample in CI), and the
round-four families (tool results of every shape, patterns with long bounds, tracking stores
and names, feedback scores of every type).

    .venv/bin/python scripts/fuzz_errors.py [--per-verb 40] [--per-endpoint 60]

CLI: each verb gets files (config, agent spec, dataset, deploy config) and arguments drawn from
junk text, broken YAML/JSON, non-UTF-8 bytes, lone surrogates, hostile paths and huge numbers;
every run must exit 0 or 2 (3: a budget stop), print no traceback, and end a failure in one line
with "Fix:". Service: each endpoint gets generated bodies and path values; every answer must be
a 2xx or 4xx with an {"error"} body, never a 5xx. Prints the counts and the distinct error
causes seen; exits 1 on any broken promise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LOCALSYM = [str(Path(sys.executable).parent / "localsym")]
PIECES = ["{", "[1, 2", "a: [", "\u2028", "nodes: 3", "{% for %}", "agent: ../../../etc/passwd",
          "null", "1e999", "- - -", "\ud800", "agent: agent.yaml\ndataset: {train: x}",
          "nodes: [{name: a}]", "metric: nosuch:fn", "tools: [x.py:y]", "models: {agent: stub}",
          "dataset: {path: /dev/null}", "name: [1]", '{"inputs": {}}', "\x00\x01", "é" * 50,
          # round two (issue 23)
          "{{ 'x'|center(1500000000) }}", "{{ ((((9**64)**64)**64)**64)**64 }}",
          "pattern: '[a-z ]{1,30000}'", "split: [0, 0, 0]", "max_steps: 2\nedges: []",
          "metric_timeout: -1", "name: ''", "via: [{op: regex, pattern: '(a+)+$'}]",
          "arg_from: {t.x: {input: q, via: [teleport]}}", "id,q,q\n1,a,b", "NaN", "[" * 300]


def junk(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(80)))
    text = "\n".join(rng.choice(PIECES) for _ in range(rng.randrange(1, 5)))
    if kind == 1:
        text = text.replace("\ud800", "?")
    return text.encode("utf-8", "surrogatepass")


def cli_case(rng: random.Random, verb: str, tmp: Path) -> list[str]:
    bad = tmp / rng.choice(["c.yaml", "c.json", "d.jsonl", "d.csv"])
    bad.write_bytes(junk(rng))
    agent = ROOT / "examples" / "object_counting" / "agent.yaml"
    pick = rng.choice
    return {
        "train": lambda: ["train", bad, "--run-dir", pick([tmp / "run", tmp, bad]), "--quiet"],
        "eval": lambda: ["eval", pick([bad, agent]), bad, "--model", "stub",
                         *pick([[], ["--metric", pick(["x.py:f", "nope", "a:b:c"])]])],
        "run": lambda: ["run", pick([bad, agent]), pick(["q=1", "{", '{"question": 3}',
                                                         '{"question": "\\ud800"}',
                                                         "{" + '"a": {' * 300]),
                        "--model", "stub", *pick([[], ["--tool", pick(["nope.py:f",
                                                                       "collections:OrderedDict",
                                                                       "os:getcwd"])],
                                                  ["--max-tokens", pick(["0", "-1", "x"])]])],
        "report": lambda: ["report", pick([tmp, bad, tmp / "none"])],
        "serve": lambda: ["serve", pick([bad, agent]), "--dir", pick([bad, tmp / "dep"]),
                          "--port", str(pick([0, 99999, -1, 70000])),  # never a valid serve
                          *pick([[], ["--host", "0.0.0.0"]])],
        "generate": lambda: ["generate", "hi", "--model", pick(["stub", "../x", str(bad)]),
                             "--schema", pick(["nope:Cls", "json:dumps", "localsym.lm:LM"])],
        "models": lambda: ["models", "install", pick(["../../etc/passwd", "nope", "a/b"])],
        "cache": lambda: ["cache", pick(["stats", "clear"]), "--cache-dir", pick([bad, tmp])],
        "init": lambda: ["init", pick([bad, tmp])],
    }[verb]()


def run_api(cases: int, seed: int) -> dict:
    """The Python API's top-level functions on generated bad arguments: each returns or raises
    a LocalsymError (one line with its fix), never anything else."""
    import localsym
    from localsym.data import Example
    from localsym.errors import LocalsymError

    rng = random.Random(seed)
    agent = ROOT / "examples" / "object_counting" / "agent.yaml"
    lm = localsym.open_lm("stub")
    junk_values = [None, 0, -1, "", "bogus", "x.py:f", {}, [], "\ud800", 10**23, agent]
    rows = [Example(id="1", inputs={"question": "2 apples?"}, expected={"answer": 2})]
    calls = {
        "train": lambda v: localsym.train(agent, rows, rows, lm=lm, metric=rng.choice(
            [v, "numeric_match"]), loss=rng.choice([v, "metric"]),
            config=rng.choice([{"max_steps": v}, {"batch_size": v}, {"evidence": v}])),
        "evaluate": lambda v: localsym.evaluate(rng.choice([agent, v]), rows, lm=lm,
                                                metric=rng.choice([v, "exact_match"])),
        "init_task": lambda v: localsym.init_task(Path(tempfile.mkdtemp()) / str(v)[:20]),
        "open_lm": lambda v: localsym.open_lm(v if isinstance(v, str) else "stub",
                                              cache_mode=rng.choice([v, "off"])),
        "PipelineSpec.load": lambda v: localsym.PipelineSpec.load(v if isinstance(
            v, (str, Path)) else "nope.yaml"),
    }
    out = {}
    for name, call in calls.items():
        outcomes, broken = Counter(), []
        for _ in range(cases):
            value = rng.choice(junk_values)
            try:
                call(value)
                outcomes["returned"] += 1
            except LocalsymError as err:
                outcomes["LocalsymError"] += 1
                if "Fix:" not in str(err):
                    broken.append((name, repr(value), str(err)[:200]))
            except Exception as err:  # noqa: BLE001 - what the sweep is looking for
                broken.append((name, repr(value), f"{type(err).__name__}: {str(err)[:200]}"))
        out[name] = {"cases": cases, "outcomes": dict(outcomes), "broken": broken}
    lm.close()
    return out


# -- generated families (issue 33): wrong types over the API, damaged files, patterns --------
def wrong_values(rng: random.Random, tmp: Path) -> list:
    """Values of every wrong kind: each type the API's arguments never take, and bad ones of
    the types they do take."""
    afile = tmp / "afile"
    afile.write_text("x")
    return [None, True, 0, -1, 10**23, float("nan"), float("inf"), "", "bogus", "\ud800",
            b"bytes", [], [1, "a"], ["x"], {}, {"a": 1}, ("t",), object(), afile, tmp,
            tmp / "missing", lambda *a: None, {"id": 1}, [{"inputs": 3}]]


def api_targets(tmp: Path) -> dict:
    """Each public entry point with a valid call: name -> (function, kwargs). The sweep calls
    each with one or two of its arguments replaced by a wrong value."""
    import localsym
    from localsym.agent import Pipeline, PipelineSpec, ToolRegistry
    from localsym.data import Example, load_jsonl, load_table
    from localsym.metrics import metric, register_metric
    from localsym.pytest_plugin import open_cassette

    agent = ROOT / "examples" / "object_counting" / "agent.yaml"
    data = ROOT / "examples" / "object_counting" / "data" / "val.jsonl"
    spec = PipelineSpec.load(agent)
    lm = localsym.open_lm("stub")
    rows = [Example(id="1", inputs={"question": "2 apples?"}, expected={"answer": 2})]
    fresh = iter(range(10**6))

    def new_dir():
        return tmp / f"run{next(fresh)}"

    def fn(n: int) -> str:
        return str(n)
    return {
        "train": (localsym.train, lambda: {
            "agent": spec, "train": rows, "val": rows, "lm": lm, "metric": "numeric_match",
            "loss": "metric", "config": {"max_steps": 1, "optimizers": ["structure"]},
            "run_dir": new_dir(), "tools": None, "log": lambda *_: None}),
        "evaluate": (localsym.evaluate, lambda: {"agent": spec, "examples": rows, "lm": lm,
                                                 "metric": "exact_match"}),
        "init_task": (localsym.init_task, lambda: {"directory": new_dir()}),
        "open_lm": (localsym.open_lm, lambda: {"model": "stub", "cache_mode": "off"}),
        "Pipeline": (Pipeline, lambda: {"spec": spec, "lm": lm, "tools": None}),
        "Pipeline.forward": (lambda inputs: Pipeline(spec, lm).forward(inputs),
                             lambda: {"inputs": {"question": "2 apples?"}}),
        "lm.call_batch": (lm.call_batch, lambda: {"calls": [("hi", localsym.SamplingParams,
                                                             None)]}),
        "PipelineSpec.load": (PipelineSpec.load, lambda: {"path": agent}),
        "PipelineSpec.from_data": (PipelineSpec.from_data, lambda: {
            "data": json.loads(spec.model_dump_json())}),
        "load_jsonl": (load_jsonl, lambda: {"path": data}),
        "load_table": (load_table, lambda: {"path": data, "fields": None}),
        "metric": (metric, lambda: {"name": "exact_match"}),
        "register_metric": (register_metric, lambda: {"name": f"m{next(fresh)}",
                                                      "fn": lambda o, e: 1.0}),
        "ToolRegistry.register": (lambda f: ToolRegistry().register(f), lambda: {"f": fn}),
        "open_cassette": (open_cassette, lambda: {"directory": tmp / "cassette",
                                                  "record": False}),
    }


def damaged_files(rng: random.Random, tmp: Path) -> list[tuple[str, Path, object]]:
    """Files localsym reads, each damaged at random: (what, path, how to read it)."""
    import localsym
    from localsym.agent import PipelineSpec
    from localsym.data import Example, load_jsonl, load_table
    from localsym.pytest_plugin import open_cassette
    from localsym.report import write_report

    agent = ROOT / "examples" / "object_counting" / "agent.yaml"
    rows = [Example(id="1", inputs={"question": "2 apples?"}, expected={"answer": 2})]
    run_dir = tmp / "run"
    localsym.train(agent, rows, rows, lm="stub", metric="numeric_match", loss="metric",
                   config={"max_steps": 1, "optimizers": ["structure"]}, run_dir=run_dir,
                   log=lambda *_: None)
    (run_dir / "summary.json").write_text(json.dumps({
        "name": "r", "steps": 1, "accepted": 0, "rolled_back": 0, "val_after": 0.0,
        "llm_calls": {"agent": {"misses": 1, "hits": 0}}, "wall_seconds": 1.0}))
    cassette = tmp / "cassette"
    cassette.mkdir()
    (cassette / "lm.json").write_text(json.dumps({"identity": {"backend": "stub"},
                                                  "name": "stub"}))
    data = tmp / "data.jsonl"
    data.write_text((ROOT / "examples" / "object_counting" / "data" / "val.jsonl").read_text())
    csv = tmp / "data.csv"
    csv.write_text("id,question,answer\n1,two apples?,2\n")
    spec_file = tmp / "agent.yaml"
    spec_file.write_text(agent.read_text())

    def resume():
        localsym.train(agent, rows, rows, lm="stub", metric="numeric_match", loss="metric",
                       config={"max_steps": 2, "optimizers": ["structure"]}, run_dir=run_dir,
                       resume=True, log=lambda *_: None)
    return [("state.json", run_dir / "state.json", resume),
            ("events.jsonl", run_dir / "events.jsonl", lambda: write_report(run_dir)),
            ("best_spec.json", run_dir / "best_spec.json", lambda: write_report(run_dir)),
            ("cassette lm.json", cassette / "lm.json", lambda: open_cassette(cassette, False)),
            ("dataset jsonl", data, lambda: load_jsonl(data)),
            ("summary.json", run_dir / "summary.json", lambda: write_report(run_dir)),
            ("dataset csv", csv, lambda: load_table(csv, {"inputs": {"question": "question"},
                                                         "expected": {"answer": "answer"}})),
            ("agent spec", spec_file, lambda: PipelineSpec.load(spec_file))]


def damage(rng: random.Random, raw: bytes) -> bytes:
    """One generated damage of a file's bytes: cut short, bytes flipped, a JSON of the wrong
    shape, a key dropped or its value replaced, emptied, or not UTF-8."""
    kind = rng.randrange(6)
    if kind == 0:
        return raw[: rng.randrange(len(raw) + 1)]
    if kind == 1:
        b = bytearray(raw)
        for _ in range(rng.randrange(1, 8)):
            if b:
                b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if kind == 2:
        return json.dumps(rng.choice([[], "x", None, 3, [{}], {"format": "?"}])).encode()
    if kind == 3:
        try:
            doc = json.loads(raw.decode().splitlines()[0])
        except (ValueError, IndexError, UnicodeDecodeError):
            return raw[::-1]
        if isinstance(doc, dict) and doc:
            key = rng.choice(sorted(doc))
            if rng.random() < 0.5:
                del doc[key]
            else:
                doc[key] = rng.choice([None, "x", -1, [], {}, 10**30])
        return json.dumps(doc).encode()
    if kind == 4:
        return b""
    return b"\xff\xfe" + raw


def nested_patterns(rng: random.Random, n: int) -> list[str]:
    """Patterns with nested unbounded quantifiers (catastrophic backtracking in ``re``)."""
    atoms = ["a", "[a-z]", ".", "\\w", "(a|aa)", "[^b]", "\\d"]
    inner, outer = ["+", "*", "{1,}", "{2,99}"], ["+", "*", "{1,}"]
    return [f"({rng.choice(atoms)}{rng.choice(inner)}){rng.choice(outer)}"
            f"{rng.choice(['b', '$', '', 'x'])}" for _ in range(n)]


def run_api_generated(cases: int, seed: int) -> dict:
    """The generated families: each public entry point with wrong values for its arguments;
    each file localsym reads, damaged; nested patterns where a spec takes a pattern. Every case
    returns or raises a LocalsymError with its fix (and a pattern one within 5 s)."""
    import threading

    from localsym.agent import Pipeline, PipelineSpec
    from localsym.errors import LocalsymError
    from localsym.lm import open_lm

    rng = random.Random(seed)
    out: dict = {}

    def outcome(name: str, case: str, call) -> None:
        row = out.setdefault(name, {"cases": 0, "outcomes": Counter(), "broken": []})
        row["cases"] += 1
        try:
            call()
            row["outcomes"]["returned"] += 1
        except LocalsymError as err:
            row["outcomes"]["LocalsymError"] += 1
            if "Fix:" not in str(err) or "\n" in str(err):
                row["broken"].append((name, case, str(err)[:200]))
        except Exception as err:  # noqa: BLE001 - what the sweep is looking for
            row["broken"].append((name, case, f"{type(err).__name__}: {str(err)[:200]}"))

    home = Path.cwd()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        os.chdir(tmp)  # a relative junk path ("bogus") lands here, never in the caller's cwd
        try:
            values = wrong_values(rng, tmp)
            for name, (function, valid) in api_targets(tmp).items():
                for _ in range(cases):
                    kwargs = valid()
                    for key in rng.sample(sorted(kwargs), min(len(kwargs), rng.choice([1, 1, 2]))):
                        kwargs[key] = rng.choice(values)
                    case = ", ".join(f"{k}={v!r}"[:60] for k, v in kwargs.items())
                    outcome(f"api {name}", case, lambda: function(**kwargs))
        finally:
            os.chdir(home)
    with tempfile.TemporaryDirectory() as t:
        files = damaged_files(rng, Path(t))
        originals = {path: path.read_bytes() for _, path, _ in files}
        for _ in range(cases):
            for what, path, read in files:
                damaged = damage(rng, originals[path])
                path.write_bytes(damaged)
                outcome(f"damaged {what}", repr(damaged[:60]), read)
                path.write_bytes(originals[path])
    lm = open_lm("stub")
    for pattern in nested_patterns(rng, cases * 2):
        where = rng.choice(["output", "arg"])
        data = {"inputs": [{"name": "q"}], "nodes": [{"name": "n", "inputs": ["q"], "outputs": [
            {"name": "a", **({"pattern": pattern} if where == "output" else {})}]}]}
        if where == "arg":
            data["tools"] = [{"name": "calculator", "description": "c",
                              "patterns": {"expression": pattern}}]
            data["nodes"][0].update(tools=["calculator"])

        def load_and_run(data=data):
            spec = PipelineSpec.from_data(data)
            done = threading.Event()
            worker = threading.Thread(target=lambda: (Pipeline(spec, lm).forward(
                {"q": "a" * 34 + "c"}), done.set()), daemon=True)
            worker.start()
            if not done.wait(5):
                raise RuntimeError("a run under this pattern did not end in 5 s")
        outcome(f"pattern in an {where}", pattern, load_and_run)
    lm.close()
    return {k: {**v, "outcomes": dict(v["outcomes"])} for k, v in out.items()}


def run_cli(per_verb: int, seed: int) -> dict:
    rng = random.Random(seed)
    out = {}
    for verb in ("train", "eval", "run", "report", "serve", "generate", "models", "cache",
                 "init"):
        codes, causes, broken = Counter(), Counter(), []
        for _ in range(per_verb):
            with tempfile.TemporaryDirectory() as tmp:
                args = [str(a) for a in cli_case(rng, verb, Path(tmp))]
                try:
                    proc = subprocess.run(LOCALSYM + args, capture_output=True, timeout=60,
                                          env={"LOCALSYM_CACHE_DIR": f"{tmp}/cache",
                                               "PATH": "/usr/bin:/bin"})
                except subprocess.TimeoutExpired:
                    broken.append((args, "timed out"))
                    continue
            err = proc.stderr.decode("utf-8", "replace")
            codes[proc.returncode] += 1
            lines = [l for l in err.strip().splitlines()
                     if not l.startswith("localsym: warning:")]
            if "Traceback" in err or proc.returncode not in (0, 2, 3) or \
                    (proc.returncode == 2 and (len(lines) != 1 or "Fix:" not in lines[0])):
                broken.append((args, err[-500:]))
            elif proc.returncode == 2:
                cause = re.sub(r"(/tmp/\S+|\d+|'[^']*')", "_", lines[0].split("Fix:")[0])
                causes[cause[:70]] += 1
        out[verb] = {"cases": per_verb, "exit codes": dict(codes),
                     "distinct errors": len(causes), "broken": broken}
    return out


def _not_a_score(raw: str | None) -> bool:
    try:
        score = json.loads(raw or "").get("score")
    except (ValueError, AttributeError):
        return False
    return score is not None and (isinstance(score, bool) or not isinstance(score, (int, float)))


def run_service(per_endpoint: int, seed: int) -> dict:
    from fastapi.testclient import TestClient

    from localsym.config import load_deploy_config
    from localsym.deploy.evolve import EvolvingAgent
    from localsym.deploy.serve import create_app

    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        agent = Path(tmp) / "agent.yaml"
        agent.write_text((ROOT / "examples" / "object_counting" / "agent.yaml").read_text())
        config, base = load_deploy_config(agent)
        config = config.model_copy(update={"models": config.models.model_copy(
            update={"agent": "stub"}), "evolve": config.evolve.model_copy(update={"every": None})})
        evolving = EvolvingAgent(Path(tmp) / "dep", config, base, log=lambda _: None)
        client = TestClient(create_app(evolving), raise_server_exceptions=False,
                            base_url="http://127.0.0.1")
        values = [None, 0, -1, 10**23, 1.5, "x", "\\ud800", [], {}, True, "a" * 5000]
        endpoints = {
            "POST /run": lambda: ("post", "/run", {"inputs": rng.choice(values + [
                {"question": rng.choice(values)}, {"q": 1}])}),
            "POST /feedback": lambda: ("post", "/feedback", {
                "id": rng.choice(values), "score": rng.choice(values),
                **rng.choice([{}, {"expected": rng.choice(values)}, {"text": rng.choice(values)}])}),
            "POST /rollback": lambda: ("post", "/rollback", {"version": rng.choice(values)}),
            "GET /versions/{n}": lambda: ("get", f"/versions/{rng.choice(values)}", None),
            "GET /samples/{id}": lambda: ("get", f"/samples/{rng.choice(values)}", None),
            "POST /evolve": lambda: ("post", f"/evolve?wait={rng.choice(values)}", None),
        }
        out = {}
        try:
            for name, make in endpoints.items():
                statuses, broken = Counter(), []
                for _ in range(per_endpoint):
                    method, path, body = make()
                    raw = json.dumps(body) if body is not None else None
                    if raw is not None and rng.random() < 0.2:
                        raw = raw[: rng.randrange(len(raw) + 1)]  # torn JSON
                    resp = getattr(client, method)(path, **(
                        {"content": raw, "headers": {"content-type": "application/json"}}
                        if method == "post" else {}))
                    statuses[resp.status_code] += 1
                    if resp.status_code >= 500:
                        broken.append((path, raw, resp.text[:300]))
                    elif resp.status_code == 200 and name == "POST /feedback" and \
                            _not_a_score(raw):
                        broken.append((path, raw, "a score that is not a number was stored"))
                out[name] = {"cases": per_endpoint, "statuses": dict(statuses), "broken": broken}
        finally:
            evolving.wait(60)
            evolving.close()
    return out


# -- round four (issue 39): tool results of every shape, patterns with long bounds, tracking ----
def _shapes(rng: random.Random):
    """A tool's return values of every shape: deep, cyclic, huge, not JSON."""
    deep: list = []
    for _ in range(rng.choice([50, 5_000, 100_000])):
        deep = [deep]
    cyclic: dict = {"a": 1}
    cyclic["self"] = cyclic
    return rng.choice([deep, cyclic, "x" * rng.choice([10, 10**6]), b"\xff\x00", float("nan"),
                       object(), (i for i in range(3)), {1, 2}, [cyclic], {"deep": deep}])


def run_round_four(cases: int, seed: int) -> dict:
    """Tool results of every shape through a node's program, string schemas with a pattern and
    a long bound on the stub model, and tracking with junk stores and names: each returns or
    fails in one line (a LocalsymError, a failed tool call), never anything else."""
    from pydantic import Field, create_model

    import localsym
    from localsym.agent import Pipeline, PipelineSpec, ToolRegistry
    from localsym.errors import LocalsymError

    rng = random.Random(seed)
    lm = localsym.open_lm("stub")
    out: dict = {}

    def family(name: str, make) -> None:
        outcomes, broken = Counter(), []
        for _ in range(cases):
            try:
                outcomes[make() or "returned"] += 1
            except LocalsymError as err:
                outcomes["LocalsymError"] += 1
                if "Fix:" not in str(err):
                    broken.append((name, str(err)[:200]))
            except Exception as err:  # noqa: BLE001 - what the sweep is looking for
                broken.append((name, f"{type(err).__name__}: {str(err)[:200]}"))
        out[name] = {"cases": cases, "outcomes": dict(outcomes), "broken": broken}

    def tool_result() -> str:
        value = _shapes(rng)
        registry = ToolRegistry()

        @registry.register
        def shape(text: str) -> str:
            """Returns anything."""
            return value  # type: ignore[return-value]

        spec = PipelineSpec.from_data({
            "inputs": [{"name": "q"}], "tools": [{"name": "shape", "description": "s"}],
            "nodes": [{"name": "a", "inputs": ["q"], "tools": ["shape"],
                       "outputs": [{"name": "answer"}],
                       "program": {"outputs": {"answer": "shape(text=q) | words | item(0)"}}}]})
        traj = Pipeline(spec, lm, registry).forward({"q": "hi"})
        return "failed call" if traj.records[0].tool_calls[0].error else "returned"

    def bounded_pattern() -> str:
        cls = rng.choice(["[a-z]", "[0-9]", "\\w", "[A-Z ]", "."])
        pattern = rng.choice([f"^{cls}+$", f"{cls}*", f"^{cls}{{2,}}$", f"({cls}|-)+"])
        schema = create_model("S", answer=(str, Field(pattern=pattern, max_length=rng.choice(
            [32, 64, 300, 5000]), min_length=rng.choice([0, 1, 40]))))
        lm.generate([{"role": "user", "content": "x"}], schema)
        return "returned"

    family("tool results", tool_result)
    family("pattern + bound", bounded_pattern)
    try:
        import mlflow  # noqa: F401 - the tracking family needs the extra
    except ImportError:
        return out
    from localsym.tracking import log_run

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        agent = ROOT / "examples" / "object_counting" / "agent.yaml"
        rows = [localsym.Example(id="1", inputs={"question": "2 apples?"},
                                 expected={"answer": 2})]
        localsym.train(agent, rows, rows, lm=lm, metric="numeric_match", loss="metric",
                       config={"max_steps": 1, "optimizers": ["structure"]}, run_dir=run_dir,
                       log=lambda *_: None)
        uris = [f"{tmp}/mlruns", f"sqlite:///{tmp}/x.db", "gopher://x/y", "http://127.0.0.1:9",
                "", "file:///dev/null/x", "\x00", "mlruns" * 200]

        def track() -> str:
            if rng.random() < 0.3:
                (run_dir / "summary.json").write_text(rng.choice(['{"name": "r", "va', "[]",
                                                                  "{}", "null"]))
            log_run(run_dir, rng.choice(uris), rng.choice(["localsym", "", " ", "x" * 600]))
            return "logged"
        family("tracking", track)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-verb", type=int, default=40)
    ap.add_argument("--per-endpoint", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cli = run_cli(args.per_verb, args.seed)
    service = run_service(args.per_endpoint, args.seed)
    api = run_api(args.per_verb, args.seed) | run_api_generated(args.per_verb, args.seed) | \
        run_round_four(args.per_verb, args.seed)
    for name, row in api.items():
        print(f"{name:18s} {row['cases']:4d} cases  {row['outcomes']}  broken "
              f"{len(row['broken'])}")
        for b in row["broken"][:3]:
            print("   ", b)
    for verb, row in cli.items():
        print(f"{verb:9s} {row['cases']:4d} cases  exit {row['exit codes']}  "
              f"{row['distinct errors']} distinct errors  broken {len(row['broken'])}")
        for b in row["broken"][:3]:
            print("   ", b)
    for name, row in service.items():
        print(f"{name:18s} {row['cases']:4d} cases  statuses {row['statuses']}  "
              f"5xx {len(row['broken'])}")
        for b in row["broken"][:3]:
            print("   ", b)
    bad = sum(len(r["broken"]) for part in (cli, service, api) for r in part.values())
    print(json.dumps({"cli_cases": sum(r["cases"] for r in cli.values()),
                      "distinct_cli_errors": sum(r["distinct errors"] for r in cli.values()),
                      "service_cases": sum(r["cases"] for r in service.values()),
                      "broken": bad}))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
