"""One-call training and evaluation, for ``import localsym`` users (the CLI's ``train`` and
``eval`` in a function each)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from localsym.agent import Pipeline, PipelineSpec, ToolRegistry, default_tools
from localsym.data import Example
from localsym.errors import ConfigError
from localsym.files import user_path, validation_error
from localsym.learn import LanguageLoss, LearningRate, TrainConfig, build_trainer
from localsym.learn.evaluate import evaluate as _evaluate
from localsym.lm import LM, SamplingParams, open_lm
from localsym.metrics import Metric
from localsym.metrics import metric as find_metric


def train(agent: PipelineSpec | str | Path, train: list[Example], val: list[Example], *,
          lm: LM | None = None, optimizer_lm: LM | None = None,
          metric: str | Metric | None = None, loss: str = "language",
          config: TrainConfig | dict | None = None, tools: ToolRegistry | None = None,
          sampling: SamplingParams | None = None,
          meta_sampling: SamplingParams | dict | None = None,
          learning_rate: LearningRate | dict | None = None, run_dir: str | Path | None = None,
          resume: bool = False, progress: bool = False, log=print) -> PipelineSpec:
    """Train ``agent`` (a spec or its file) on ``train``, gated on ``val``; returns the best
    spec. ``metric``: a built-in name, a reference (``metrics.py:fn``) or a function
    ``(outputs, expected) -> float``. ``lm`` runs the agent (default: the embedded model);
    ``optimizer_lm`` the loss, gradients and optimizers (default: ``lm``), sampled with
    ``meta_sampling`` (default ``META_PARAMS``) under the ``learning_rate`` (a LearningRate or
    its fields as a dict, as a config's ``learning_rate``). ``run_dir`` keeps events,
    checkpoints and the report (and makes ``resume=True`` possible)."""
    spec = agent if isinstance(agent, PipelineSpec) else PipelineSpec.load(
        user_path(agent, "agent", "give a PipelineSpec or the path of its file"))
    train, val = _examples(train, "train"), _examples(val, "val")
    score = find_metric(metric) if metric is not None else None
    lm, meta = _lm(lm, "lm"), _lm(optimizer_lm, "optimizer_lm")
    lm = lm or open_lm()
    meta = meta or lm
    _tools(tools)
    if run_dir is not None:
        run_dir = user_path(run_dir, "run_dir", "give a directory (new or a run's), or None")
        if run_dir.exists() and not run_dir.is_dir():
            raise ConfigError(f"run_dir {run_dir} is a file", "give a directory (new or a "
                              "run's)")
    if not callable(log):
        raise ConfigError(f"log is {type(log).__name__}, not a function",
                          "give a function of one line of text (print, a logger's info)")
    config = _train_config(config)
    rate = _validated(LearningRate, learning_rate, "learning rate")
    meta_params = _validated(SamplingParams, meta_sampling, "meta sampling") \
        if meta_sampling is not None else None
    trainer = build_trainer(spec, lm, meta, metric=score, loss=loss, tools=tools,
                            sampling=sampling, meta_sampling=meta_params, train=config,
                            learning_rate=rate, run_dir=run_dir, log=log, progress=progress)
    return trainer.fit(train, val, resume=resume).best_spec


def _examples(rows, what: str) -> list[Example]:
    """A split as given: Examples, or dicts of their fields (``{"id", "inputs", ...}``)."""
    if isinstance(rows, (str, bytes, dict)) or not isinstance(rows, (list, tuple)):
        raise ConfigError(f"{what} must be a list of examples, not {type(rows).__name__}",
                          "load one: localsym.data.load_table('data/train.jsonl')")
    out = []
    for i, row in enumerate(rows):
        if isinstance(row, Example):
            out.append(row)
            continue
        try:
            out.append(Example.model_validate(row))
        except ValidationError as err:
            raise validation_error(err, f"{what} example {i} is not an example",
                                   "give {'id': ..., 'inputs': {...}, 'expected': {...}}, or "
                                   "an Example") from None
    return out


def _lm(lm, what: str) -> LM | None:
    """An LM as given: an LM, a model's name (opened with the cache), or None."""
    if lm is None or isinstance(lm, LM):
        return lm
    if isinstance(lm, (str, Path)):
        return open_lm(str(lm))
    raise ConfigError(f"{what} must be an LM or a model's name, not {type(lm).__name__}",
                      "pass localsym.lm.open_lm(...), a registry name, or a GGUF path")


def _tools(tools) -> None:
    if tools is not None and not isinstance(tools, ToolRegistry):
        raise ConfigError(f"tools must be a ToolRegistry, not {type(tools).__name__}",
                          "build one: ToolRegistry(), then registry.register(fn)")


def _train_config(config: TrainConfig | dict | None) -> TrainConfig:
    """The training config as given, validated: a bad field is one ConfigError line."""
    return _validated(TrainConfig, config, "training config", "config={'max_steps': 2}")


def _validated(model, value, what: str, example: str = "a dict of its fields"):
    """``value`` as a ``model`` (given as one, as a dict of its fields, or None for its
    defaults); a bad one is one ConfigError line."""
    if isinstance(value, model):
        return value
    if value is not None and not isinstance(value, dict):
        raise ConfigError(f"{what} {value!r} is not a {model.__name__} or a dict",
                          f"pass a {model.__name__} or {example}")
    try:
        return model.model_validate(value or {})
    except ValidationError as err:
        raise validation_error(err, f"invalid {what}",
                               f"see localsym.{model.__module__.split('.')[1]}."
                               f"{model.__name__} for the fields") from None


def evaluate(agent: Pipeline | PipelineSpec | str | Path, examples: list[Example], *,
             lm: LM | None = None, metric: str | Metric | None = None,
             tools: ToolRegistry | None = None, sampling: SamplingParams | None = None) -> float:
    """The mean score of ``agent`` on ``examples``: the metric where an example has expected
    outputs, else the language loss's judge. The runs are batched."""
    rows = _examples(examples, "examples")
    if not rows:
        raise ConfigError("there are no examples to evaluate on",
                          "pass at least one example")
    _tools(tools)
    if isinstance(agent, Pipeline):
        pipeline = agent
    else:
        spec = agent if isinstance(agent, PipelineSpec) else PipelineSpec.load(agent)
        pipeline = Pipeline(spec, _lm(lm, "lm") or open_lm(), tools or default_tools(),
                            sampling)
    outputs = set(pipeline.spec.final_outputs())
    unknown = sorted({k for ex in rows for k in (ex.expected or {})} - outputs)
    if unknown:
        raise ConfigError(f"the examples expect {unknown}, which the agent never outputs (its "
                          f"answer: {sorted(outputs)})", "rename the expected fields to the "
                          "agent's outputs, or evaluate the agent they were written for")
    score = find_metric(metric) if metric is not None else None
    scores = _evaluate(pipeline, rows, score,
                       LanguageLoss(pipeline.lm, pipeline.spec.description, score))
    return float(np.mean(scores))


TASK_FILES = ("agent.yaml", "config.yaml", "metrics.py", "tools.py", "data/train.csv",
              "data/val.csv", "data/test.csv")


def init_task(directory: str | Path, force: bool = False) -> list[str]:
    """Write a small task of your own to start from into ``directory`` (``localsym init``):
    agent spec, config, CSV data, a metric and a tool. Refuses a non-empty directory unless
    ``force`` (files of the same name are then replaced). Returns the files written."""
    target = user_path(directory, "the task's directory", "give a new directory's path")
    try:
        return _write_task(target, force)
    except OSError as err:
        raise ConfigError(f"cannot write the task into {target}: {err.strerror or err}",
                          "give a new directory in a writable place") from None


def _write_task(target: Path, force: bool) -> list[str]:
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{target} is a file", "give a new directory")
    if target.exists() and any(target.iterdir()) and not force:
        raise ConfigError(f"{target} exists and is not empty",
                          "give a new directory, or --force to write into it (files of the "
                          "same name are replaced)")
    template = files("localsym") / "init_template"
    for rel in TASK_FILES:
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes((template / rel).read_bytes())
    return list(TASK_FILES)
