"""Runs end to end: `localsym train/eval/run/report` on the real model, the run directory, the
HTML report in a real headless browser, and the ready example tasks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import RoutedLM, wait_until
from test_cli import run
from test_learn_logic import ROUTES, spec as two_node_spec
from localsym.learn.optim import LearningRate
from localsym.agent import Pipeline
from localsym.config import load_config
from localsym.data import Example, load_jsonl
from localsym.metrics import numeric_match
from localsym.learn import MetricLoss, PromptOptimizer, TrainConfig, Trainer
from localsym.report import write_report
from localsym.rundata import load_spec

ROOT = Path(__file__).parent.parent
EXAMPLES = sorted(p.parent for p in (ROOT / "examples").glob("*/config.yaml"))


def tiny_config(tmp_path: Path) -> Path:
    """The object_counting example, cut to one example per split and one step."""
    src = ROOT / "examples" / "object_counting"
    for split in ("train", "val", "test"):
        (tmp_path / f"{split}.jsonl").write_text(
            (src / "data" / f"{split}.jsonl").read_text().splitlines()[0] + "\n")
    shutil.copy(src / "agent.yaml", tmp_path / "agent.yaml")
    config = yaml.safe_load((src / "config.yaml").read_text())
    config.update(dataset={"train": "train.jsonl", "val": "val.jsonl", "test": "test.jsonl"},
                  train={"batch_size": 1, "max_steps": 1, "optimizers": ["prompt"]},
                  sampling={"max_tokens": 24, "max_tokens_limit": 48},
                  meta_sampling={"max_tokens": 32, "max_tokens_limit": 64, "on_limit": "close"})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_train_command_writes_the_run_directory_and_resumes(tmp_path):
    config = tiny_config(tmp_path)
    run_dir = tmp_path / "run"
    proc = run("train", str(config), "--run-dir", str(run_dir), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "validation" in proc.stdout and "test" in proc.stdout and "1 steps" in proc.stdout
    for name in ("config.yaml", "events.jsonl", "state.json", "best_spec.json", "summary.json",
                 "specs/step-0000.json", "specs/step-0001.json"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "config.yaml").read_text() == config.read_text()  # the exact config
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 1 and summary["test_size"] == 1
    assert summary["llm_calls"]["agent"]["misses"] > 0
    events = [json.loads(l) for l in (run_dir / "events.jsonl").read_text().splitlines()]
    step = next(e for e in events if e["event"] == "step")
    for key in ("batch", "losses", "gradients", "changes", "rejected_edits", "decision",
                "val_before", "val_after", "seconds", "llm_calls"):
        assert key in step, key
    assert step["llm_calls"]["made"] > 0
    again = run("train", "--resume", str(run_dir), "--quiet")  # nothing left to do: all cached
    assert again.returncode == 0, again.stderr
    assert json.loads((run_dir / "summary.json").read_text())["val_after"] == summary["val_after"]
    assert json.loads((run_dir / "summary.json").read_text())["llm_calls"]["agent"]["misses"] == 0
    twice = run("train", str(config), "--run-dir", str(run_dir), "--quiet")
    assert twice.returncode == 2 and "already holds a run" in twice.stderr
    report = run("report", str(run_dir))
    assert report.returncode == 0 and (run_dir / "report.html").is_file()


@pytest.mark.parametrize("args, message", [
    (["train", "missing.yaml"], "cannot read config"),
    (["train", "{bad}.yaml"], "cannot read config"),
    (["report", "/nonexistent-run"], "has no events.jsonl"),
    (["train", "--resume", "/nonexistent-run"], "is not a training run directory"),
])
def test_train_and_report_errors_are_one_line(args, message):
    proc = run(*args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_bad_config_values_are_clear_errors(tmp_path):
    config = tiny_config(tmp_path)
    data = yaml.safe_load(config.read_text())
    for change, message in [({"metric": "bleu"}, "unknown metric 'bleu'"),
                            ({"dataset": {"train": "nope.jsonl", "val": "val.jsonl"}},
                             "cannot read dataset"),
                            ({"loss": "metric", "metric": None}, "loss: metric needs a metric"),
                            ({"epochs": 3}, "Extra inputs are not permitted")]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(yaml.safe_dump({**data, **change}))
        proc = run("train", str(bad), "--run-dir", str(tmp_path / "r"), "--quiet")
        assert proc.returncode == 2, (change, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_run_and_eval_commands():
    agent = ROOT / "examples" / "object_counting" / "agent.yaml"
    proc = run("run", str(agent), "question=I have a cat and two dogs. How many animals do I have?",
               "--max-tokens", "24")
    assert proc.returncode == 0, proc.stderr
    assert isinstance(json.loads(proc.stdout)["answer"], int)
    trace = run("run", str(agent), '{"question": "I have a pen. How many pens?"}', "--trace",
                "--max-tokens", "24")
    assert json.loads(trace.stdout)["records"][0]["node"] == "count"
    data = ROOT / "examples" / "sports_understanding"
    ev = run("eval", str(data / "agent.yaml"), str(data / "data" / "val.jsonl"), "--metric",
             "exact_match", "--limit", "2", "--max-tokens", "16", "--quiet")
    assert ev.returncode == 0, ev.stderr
    result = json.loads(ev.stdout)
    assert result["examples"] == 2 and 0.0 <= result["score"] <= 1.0


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_tasks_are_complete(example):
    config, base = load_config(example / "config.yaml")
    spec = load_spec(config, base)
    assert spec.description
    assert (example / "ATTRIBUTION.md").is_file() or config.dataset.generate is not None
    if config.dataset.train:
        for split in ("train", "val", "test"):
            rows = load_jsonl(base / getattr(config.dataset, split))
            assert len(rows) >= 8
            for ex in rows:
                assert set(f.name for f in spec.inputs) <= set(ex.inputs)
                assert ex.expected is not None


def scripted_run(run_dir: Path) -> Path:
    """A run with one accepted prompt edit and one rolled-back step, from a scripted LM: the
    agent answers 0 until its plan prompt says "Show the expression only." (then 36, right on
    e0 and on validation); the next edit ("WRONG") makes it answer 2, right on e1 only, so it
    wins the minibatch (e1, the parent's failure) and loses on validation."""
    edits = iter([[{"field": "style", "new_text": "Show the expression only."}], [],
                  [{"field": "rules", "new_text": "WRONG"}]])
    routes = {**ROUTES, "PromptUpdate": lambda m: {"reasoning": "r", "edits": next(edits, [])}}

    def plan(m):
        system = m[0]["content"]
        return {"expression": "1+1" if "WRONG" in system else
                "3*12" if "Show the expression only." in system else "5*5"}

    def solve(m):
        answer = {"expression: 1+1": 2, "expression: 3*12": 36}
        got = next((v for k, v in answer.items() if k in m[-1]["content"]), 0)
        return {"action": {"tool": "finish", "outputs": {"answer": got}}}

    routes["plan_output"], routes["solve_step"] = plan, solve
    lm = RoutedLM(routes)
    train = [Example(id="e0", inputs={"question": "q"}, expected={"answer": 36}),
             Example(id="e1", inputs={"question": "q"}, expected={"answer": 2})]
    val = [Example(id="v0", inputs={"question": "q"}, expected={"answer": 36})]
    Trainer(Pipeline(two_node_spec(), lm), MetricLoss(numeric_match),
            {"prompt": PromptOptimizer(lm, LearningRate(max_change=1.0))}, lm,
            TrainConfig(optimizers=("prompt",), batch_size=1, screen_size=1, tie_break="none"),
            metric=numeric_match, run_dir=run_dir, log=lambda *_: None).fit(train, val)
    return write_report(run_dir)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_renders_in_a_headless_browser(tmp_path):
    report = scripted_run(tmp_path / "run")
    html = report.read_text()
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    browser = chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have chromium (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([browser, *flags, "--dump-dom", report.as_uri()], capture_output=True,
                         text=True, timeout=120).stdout
    assert 'class="plot"' in dom and "polyline" in dom  # the score plot
    assert dom.count('class="candidate') == 3  # start + two steps
    assert "<ins>Show the expression only.</ins>" in dom  # the accepted edit's diff
    assert "rolled back" in dom and "accepted" in dom
    assert 'class="graph"' in dom  # the workflow drawn
    shot = tmp_path / "report.png"
    subprocess.run([browser, *flags, "--window-size=1200,1600", f"--screenshot={shot}",
                    report.as_uri()], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000  # something was painted


def test_generated_data_from_the_task_description_alone(cache_dir):
    from localsym.generate import generate_examples
    from localsym.lm import SamplingParams, open_lm

    spec = load_spec(*load_config(ROOT / "examples" / "creative_writing" / "config.yaml"))
    lm = open_lm(cache_dir=cache_dir)
    try:
        params = SamplingParams(temperature=0.9, max_tokens=24, max_tokens_limit=48,
                                on_limit="close")
        rows = generate_examples(lm, spec, 3, seed=1, with_expected=False, params=params)
        again = generate_examples(lm, spec, 3, seed=1, with_expected=False, params=params)
    finally:
        lm.close()
    assert len(rows) == 3 and rows == again  # deterministic (and the second time cached)
    assert all(isinstance(r.inputs["topic"], str) and r.expected is None for r in rows)
    assert len({r.inputs["topic"] for r in rows}) == 3  # no duplicates


def test_ctrl_c_during_training_says_how_to_resume(tmp_path):
    import signal
    import sys

    config = tiny_config(tmp_path)
    # its own empty cache: the step's calls are real, so the run is still going at the signal
    # (from a cache other tests filled, it could finish before the signal is sent)
    env = {**os.environ, "LOCALSYM_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "localsym"), "train", str(config),
                             "--run-dir", str(tmp_path / "run"), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # the initial validation is checkpointed: training is under way
    assert wait_until((tmp_path / "run" / "state.json").exists, seconds=120)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err  # a one-step run takes ~10 s after its first checkpoint
    assert f"localsym train --resume {tmp_path / 'run'}" in err and "Traceback" not in err
    resumed = run("train", "--resume", str(tmp_path / "run"), "--quiet",
                  env_extra={"LOCALSYM_CACHE_DIR": env["LOCALSYM_CACHE_DIR"]})
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 1
