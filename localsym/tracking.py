"""Experiment tracking: a run directory logged to MLflow (the optional extra
``pip install 'localsym[mlflow]'``; off unless a config's ``tracking`` or ``localsym track`` asks).

What is logged is read from the run directory after training, so the trainer knows nothing of
MLflow and a run stopped by its budget, resumed, or finished long ago is logged the same way:
the config as parameters, each step's validation scores, cost and decision as metrics and tags
(step = the training step), the final agent's cost per example, and ``best_spec.json``,
``summary.json``, ``events.jsonl`` and ``report.html`` as artifacts. The default store is
MLflow's local file store in ``mlruns/`` beside the run directory: no server, nothing leaves
the machine (MLflow 3 calls its file store "maintenance mode" and asks for a database; with the
full ``mlflow`` package installed, ``--mlflow sqlite:///mlflow.db`` or a server URI works the
same). Logging a run directory again replaces its earlier MLflow run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

from localsym.errors import ConfigError
from localsym.learn.checkpoint import RunDirectory
from localsym.learn.events import StartEvent, StepEvent, StoppedEvent

EXTRA = "pip install 'localsym[mlflow]'"
MAX_PARAM = 500  # characters of one parameter's value kept (MLflow limits their length)


def _mlflow():
    # local-first: MLflow's usage telemetry (on by default in MLflow 3) stays off unless the user
    # turned it on themselves
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        import mlflow  # noqa: PLC0415 (optional: only a tracked run imports it)
        from mlflow.tracking import MlflowClient  # noqa: PLC0415
    except ImportError as err:
        raise ConfigError(f"tracking a run with MLflow needs MLflow, which is not installed "
                          f"({err})", f"install the extra: {EXTRA} (or remove tracking from "
                          "the config)") from None
    return mlflow, MlflowClient


def check_installed() -> None:
    """A ConfigError naming the extra when MLflow is not installed."""
    _mlflow()


def default_uri(run_dir: Path) -> str:
    """MLflow's local file store beside the run directory (``runs/mlruns`` for ``runs/x``)."""
    return (Path(run_dir).resolve().parent / "mlruns").as_uri()


def store_uri(where: str, base: Path) -> str:
    """A tracking URI from a config or the command line: a URI as given, a path (relative to
    ``base``) as MLflow's file store there."""
    if "://" in where or where.startswith("file:"):
        return where
    return (base / where).resolve().as_uri()


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """A nested config as MLflow parameters: dotted keys, values as text (long ones cut)."""
    if isinstance(data, dict):
        out: dict[str, str] = {}
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    text = data if isinstance(data, str) else json.dumps(data, default=str)
    return {prefix.rstrip(".") or "value": text[:MAX_PARAM]}


# A tracking server that is down is given up on in seconds, not retried for minutes (the run
# is on disk already); a user's own settings of these win.
HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def log_run(run_dir: str | Path, uri: str | None = None, experiment: str = "localsym") -> str:
    """Log the run in ``run_dir`` to MLflow at ``uri`` (default: ``default_uri``) under
    ``experiment``; the MLflow run's id. Every failure, MLflow's own too, is one ConfigError."""
    _mlflow()
    if not str(experiment).strip():
        raise ConfigError("the MLflow experiment name is empty",
                          "give a name (tracking.experiment, or --experiment NAME)")
    run = RunDirectory(run_dir)
    if not run.holds_run():
        raise ConfigError(f"{run_dir} holds no localsym run (no run.json, no state.json)",
                          "give the directory a `localsym train` run wrote")
    uri = uri or default_uri(run.run_dir)
    for key, value in HTTP_SETTINGS.items():
        os.environ.setdefault(key, value)
    try:
        return _log(run, uri, experiment)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - MLflow's own errors, of many classes: one line
        raise ConfigError(f"MLflow could not log the run to {uri}: {type(err).__name__}: "
                          f"{' '.join(str(err).split())[:240]}",
                          "check the tracking URI: a directory, file:..., or http://HOST:PORT "
                          "of a running MLflow server (sqlite:/// needs the full mlflow "
                          "package, not mlflow-skinny); the run itself is saved") from None


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid JSON ({err}): a torn write?",
                          "run `localsym report` on the run directory, or resume the run "
                          "(localsym train --resume DIR), to write it again") from None
    return data if isinstance(data, dict) else {}


def _log(run: RunDirectory, uri: str, experiment: str) -> str:
    mlflow, MlflowClient = _mlflow()
    from mlflow.entities import Metric, Param, RunTag  # noqa: PLC0415

    events = run.events()
    start = next((e for e in events if isinstance(e, StartEvent)), None)
    steps = [e for e in events if isinstance(e, StepEvent)]
    stopped = [e for e in events if isinstance(e, StoppedEvent)]
    summary = _read_json(run.summary_path)
    config = yaml.safe_load(run.config_copy.read_text("utf-8")) \
        if run.config_copy.is_file() else {}
    if not isinstance(config, dict):
        config = {}

    if uri.startswith("file:"):  # MLflow 3.18 keeps its file store only when asked for it
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    exp_id = found.experiment_id if found else client.create_experiment(experiment)
    where = str(run.run_dir.resolve())
    for old in client.search_runs([exp_id], f"tags.`localsym.run_dir` = '{_quote(where)}'"):
        client.delete_run(old.info.run_id)
    name = summary.get("name") or config.get("name") or run.run_dir.name
    mlrun = client.create_run(exp_id, run_name=str(name),
                              tags={"localsym.run_dir": where, "mlflow.source.name": "localsym"})
    run_id = mlrun.info.run_id
    now = int(time.time() * 1000)

    def metric(key: str, value: Any, step: int = 0) -> list:
        return [] if not isinstance(value, (int, float)) or isinstance(value, bool) else \
            [Metric(key, float(value), now, step)]

    metrics: list = []
    if start is not None:
        metrics += metric("val", start.val_score, 0)
    for e in steps:
        val = e.val_after if e.val_after is not None else e.val_before
        metrics += metric("val", val, e.step) + metric("val_before", e.val_before, e.step)
        metrics += metric("accepted", int(e.decision == "accepted"), e.step)
        metrics += metric("candidates", len(e.candidates), e.step)
        metrics += metric("step_calls", sum(e.llm_calls.values()), e.step)
        metrics += metric("step_seconds", e.seconds, e.step)
        scored = [c for c in e.candidates if c.calls is not None and c.val is not None]
        if scored:  # the step's best-validating candidate (the cheaper on a tie): its cost
            top = min(scored, key=lambda c: (-(c.val or 0.0), c.calls))
            metrics += metric("best_candidate.val", top.val, e.step)
            metrics += metric("best_candidate.calls_per_example", top.calls, e.step)
            metrics += metric("best_candidate.tokens_per_example", top.tokens, e.step)
    for key in ("val_before", "val_after", "test_before", "test_after", "calls_per_example",
                "tokens_per_example", "seconds_per_example", "start_calls", "wall_seconds",
                "accepted", "rolled_back"):
        metrics += metric(f"final.{key}", summary.get(key))
    tags = [RunTag(f"step.{e.step:04d}.decision", f"{e.decision}: {e.reason}"[:MAX_PARAM])
            for e in steps]
    tags += [RunTag("localsym.stopped", (s.reason or "")[:MAX_PARAM]) for s in stopped[-1:]]
    params = [Param(k, v) for k, v in flatten(config).items()]
    for i in range(0, max(len(params), len(metrics), len(tags)), 100):  # MLflow's batch limits
        client.log_batch(run_id, metrics=metrics[i:i + 100], params=params[i:i + 100],
                         tags=tags[i:i + 100])
    if not run.report_path.is_file() and steps:
        from localsym.report import write_report  # noqa: PLC0415

        write_report(run.run_dir)
    for path in (run.best_spec_path, run.summary_path, run.events_path, run.report_path):
        if path.is_file():
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, "KILLED" if summary.get("stopped") else "FINISHED")
    return run_id


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")
