"""The compute budget: an estimate before a run (calls within a factor of what the run makes),
and a budget that stops the run cleanly at a checkpoint, from which a resume with a larger
budget ends with the same agent as an unlimited run. Stub model: fast, real CLI and cache."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from test_cli import run
from conftest import run_events

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples" / "object_counting"


def config(tmp_path: Path, budget: dict | None = None, name: str = "config.yaml") -> Path:
    data = {"agent": str(EXAMPLE / "agent.yaml"), "metric": "numeric_match",
            "dataset": {s: str(EXAMPLE / "data" / f"{s}.jsonl") for s in ("train", "val", "test")}
            | {"limit": 6},
            "models": {"agent": "stub"}, "train": {"batch_size": 2, "seed": 0},
            "sampling": {"max_tokens": 24, "max_tokens_limit": 48}}
    if budget:
        data["budget"] = budget
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_estimate_rehearses_the_run_and_counts_the_calls_it_makes(tmp_path):
    """The estimate is the trainer's own run on a stand-in model: on the stub model (the
    stand-in's answers) it counts exactly the calls the run makes on an empty cache, step by
    step, and writes nothing of the run."""
    cfg = config(tmp_path)
    own = {"LOCALSYM_CACHE_DIR": str(tmp_path / "cache")}
    est = run("train", str(cfg), "--estimate", env_extra=own)
    assert est.returncode == 0, est.stderr
    assert est.stdout.startswith("estimate: 3 steps, about ")
    estimate = json.loads(est.stdout.split("\n", 1)[1])
    assert not (tmp_path / "cache" / "calls").exists()  # the run's own cache: untouched
    done = run("train", str(cfg), "--run-dir", str(tmp_path / "r"), "--quiet", env_extra=own)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert estimate["calls"] == summary["llm_calls"]["agent"]["misses"] > 0
    steps = [e["llm_calls"]["made"] for e in run_events(tmp_path / "r") if e["event"] == "step"]
    assert estimate["breakdown"]["steps"] == steps


def test_a_budget_stops_at_a_checkpoint_and_resume_with_more_ends_the_same(tmp_path):
    full = run("train", str(config(tmp_path)), "--run-dir", str(tmp_path / "full"), "--quiet")
    assert full.returncode == 0, full.stderr
    small = config(tmp_path, {"calls": 30}, "small.yaml")
    own = {"LOCALSYM_CACHE_DIR": str(tmp_path / "cache")}  # budgets count calls made, not hits
    stopped = run("train", str(small), "--run-dir", str(tmp_path / "cut"), "--quiet",
                  env_extra=own)
    assert stopped.returncode == 3 and "budget of 30 calls spent" in stopped.stderr
    assert "--resume" in stopped.stderr
    state = json.loads((tmp_path / "cut" / "state.json").read_text())
    assert state["step"] < 3 and not state["done"] and state["spent"]["calls"] >= 30
    # spent inside a step: the step is dropped (no event of it), and the resume runs it again
    events = run_events(tmp_path / "cut")
    assert [e["event"] for e in events] == ["start"] + ["step"] * state["step"] + ["stopped"]
    summary = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert summary["stopped"] and summary["test_after"] is None  # no test spending when stopped
    bigger = config(tmp_path, {"calls": 100000}, "big.yaml")
    resumed = run("train", str(bigger), "--resume", str(tmp_path / "cut"), "--quiet",
                  env_extra=own)
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "cut" / "best_spec.json").read_bytes() == \
        (tmp_path / "full" / "best_spec.json").read_bytes()


def test_estimate_on_the_embedded_model_measures_this_machine(cache_dir):
    """Without a stored speed, the estimate times two short real calls on the model once and
    keeps the figures in the cache directory (the path every non-quiet `train` takes)."""
    est = run("train", str(EXAMPLE / "config.yaml"), "--estimate")
    assert est.returncode == 0, est.stderr
    assert est.stdout.startswith("estimate: 3 steps, about ")
    speeds = json.loads((cache_dir / "speed.json").read_text())
    (figures,) = speeds.values()
    assert figures["measured"] and figures["prompt"] > 0 and figures["answer"] > 0
