"""Experiment tracking with the real MLflow (its local file store, offline): `localsym train` with
`tracking:` in the config, `localsym track`, and the clear error without the extra."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from test_cli import run
from test_runs import tiny_config

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra (pip install 'localsym[mlflow]')")
from mlflow.tracking import MlflowClient  # noqa: E402


def test_a_tracked_run_logs_config_steps_costs_and_artifacts_to_the_file_store(tmp_path,
                                                                              monkeypatch):
    config = tiny_config(tmp_path)
    data = yaml.safe_load(config.read_text())
    data["tracking"] = {"mlflow": "mlruns", "experiment": "counting"}
    config.write_text(yaml.safe_dump(data))
    run_dir = tmp_path / "run"
    proc = run("train", str(config), "--run-dir", str(run_dir), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "logged to MLflow: run " in proc.stdout
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # as localsym sets it for itself
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    exp = client.get_experiment_by_name("counting")
    (logged,) = client.search_runs([exp.experiment_id])
    assert logged.info.status == "FINISHED"
    assert logged.data.params["train.max_steps"] == "1"
    assert logged.data.params["dataset.train"] == "train.jsonl"
    history = client.get_metric_history(logged.info.run_id, "val")
    assert sorted(m.step for m in history) == [0, 1]
    for key in ("final.val_after", "final.calls_per_example", "accepted"):
        assert key in logged.data.metrics, key
    assert "step.0001.decision" in logged.data.tags
    names = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"best_spec.json", "summary.json", "events.jsonl", "report.html"} <= names

    # logged again (after the fact): the earlier MLflow run is replaced, not doubled
    again = run("track", str(run_dir), "--mlflow", str(tmp_path / "mlruns"), "--experiment",
                "counting")
    assert again.returncode == 0, again.stderr
    (now,) = client.search_runs([exp.experiment_id])
    assert now.info.run_id != logged.info.run_id and now.data.params == logged.data.params


def test_tracking_without_the_extra_is_refused_before_training(tmp_path):
    config = tiny_config(tmp_path)
    data = yaml.safe_load(config.read_text())
    data["tracking"] = {}
    config.write_text(yaml.safe_dump(data))
    code = ("import sys; sys.modules['mlflow'] = None; from localsym.cli import main; "
            f"sys.exit(main(['train', {str(config)!r}, '--run-dir', "
            f"{str(tmp_path / 'run')!r}, '--quiet']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "needs MLflow" in proc.stderr and "pip install 'localsym[mlflow]'" in proc.stderr
    assert not (tmp_path / "run" / "events.jsonl").exists()  # nothing was trained


def test_track_refuses_a_directory_without_a_run(tmp_path):
    proc = run("track", str(tmp_path))
    assert proc.returncode == 2 and "holds no localsym run" in proc.stderr
