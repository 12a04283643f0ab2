"""The run config: one YAML/JSON file that names everything a training run needs.

Paths in it are relative to the config file. Every problem is a ``ConfigError`` naming the file,
the field and the fix.
"""

from __future__ import annotations

import math

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from localsym.budget import Budget
from localsym.data import FieldMap
from localsym.errors import ConfigError
from localsym.files import load_document, validation_error
from localsym.learn import META_PARAMS, LearningRate, build_trainer
from localsym.learn.state import TrainConfig
from localsym.lm import CachedLM, open_lm
from localsym.lm.base import AGENT_PARAMS, SamplingParams
from localsym.lm.cache import CacheMode


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GenerateConfig(Strict):
    """Generate the dataset with the LLM from the task description."""

    count: int = Field(16, ge=3)
    seed: int = 0
    with_expected: bool = Field(True, description="also generate the answers (a ground truth)")


class DatasetConfig(Strict):
    """Either train/val/test files, or one file cut by ``split``, or ``generate``."""

    train: str | None = None
    val: str | None = None
    test: str | None = None
    path: str | None = None
    split: tuple[float, float, float] = Field((0.5, 0.25, 0.25), description="shares of train, "
                                              "validation, test (each >= 0, train and "
                                              "validation > 0)")
    generate: GenerateConfig | None = None
    limit: int | None = Field(None, ge=1, description="at most this many examples per split")
    fields: FieldMap | None = Field(None, description="for CSV files or flat JSONL rows: "
                                    "{inputs: {agent_field: column}, expected: {...}, id: column}")

    @model_validator(mode="after")
    def _one_source(self):
        sources = [self.train is not None, self.path is not None, self.generate is not None]
        if sum(sources) != 1:
            raise ValueError("give exactly one of: train (with val, test), path, generate")
        if self.train is not None and self.val is None:
            raise ValueError("train needs val too (the validation gate scores on it)")
        if not all(math.isfinite(x) for x in self.split) or any(x < 0 for x in self.split) or \
                self.split[0] <= 0 or self.split[1] <= 0:
            raise ValueError(f"split {list(self.split)}: the shares must be >= 0, with train and "
                             "validation above 0 (e.g. [0.5, 0.25, 0.25])")
        return self


class ModelsConfig(Strict):
    agent: str | None = Field(None, description="registry name, GGUF path or file name; default "
                                                "the embedded model")
    optimizer: str | None = Field(None, description="the model of the loss, gradients and "
                                                    "optimizers; default the agent's")
    n_ctx: int | None = Field(None, ge=16, description="the context of one call; default as "
                              "the calls need (from 1024 tokens), at most the model's trained "
                              "context and 4096")
    n_seq: int | None = Field(None, ge=1, le=64, description="calls decoded together by the "
                              "in-process model; default as many as fit `memory` of KV cache, at "
                              "most 8 (1 = one at a time)")
    n_threads: int | None = Field(None, ge=1, description="llama.cpp threads; default one per "
                                  "free core")
    memory: int | None = Field(None, ge=16, le=1 << 20, description="MiB the in-process model's "
                               "KV cache may take, all its streams together (default 512); the "
                               "streams start at the size a call needs and grow to it")
    n_gpu_layers: int = 0
    decoding: Literal["v1", "v2"] = Field(
        "v2", description="how the in-process model evaluates a call: v2 reuses a shared prefix "
        "of messages whole and appends the text the schema forces in one evaluation; v1 is the "
        "scheme before it (its cache entries stay valid under v1)")
    endpoint: str | None = Field(None, description="an OpenAI-compatible base URL (.../v1): "
                                 "the agent's model is then the model of that name there")
    optimizer_endpoint: str | None = Field(None, description="the optimizer model's server "
                                           "(default: endpoint)")
    concurrency: int = Field(4, ge=1, description="requests in flight at once to an endpoint "
                                                  "(its parallel slots)")
    api_key_env: str = Field("OPENAI_API_KEY", description="the environment variable holding "
                                                           "the endpoint's key, if it needs one")
    timeout: float = Field(120.0, gt=0, description="seconds per request to an endpoint")

    def open(self, role: str, cache) -> CachedLM:
        """The CachedLM of ``role`` (agent or optimizer)."""
        name = self.agent if role == "agent" else self.optimizer
        endpoint = self.endpoint if role == "agent" else (self.optimizer_endpoint or
                                                         self.endpoint)
        if endpoint:
            return open_lm(name, cache_dir=cache.dir, cache_mode=cache.mode, endpoint=endpoint,
                           endpoint_options={"concurrency": self.concurrency,
                                             "api_key_env": self.api_key_env,
                                             "timeout": self.timeout})
        memory: dict[str, Any] = {"kv_budget_mib": self.memory} if self.memory else {}
        return open_lm(name, cache_dir=cache.dir, cache_mode=cache.mode, n_ctx=self.n_ctx,
                       n_seq=self.n_seq, n_threads=self.n_threads, **memory,
                       n_gpu_layers=self.n_gpu_layers, decoding=self.decoding)

    def shared(self) -> bool:
        """Whether the optimizer is the agent's own model (one LM serves both)."""
        return self.optimizer in (None, self.agent) and \
            (self.optimizer_endpoint or self.endpoint) == self.endpoint


class ToolRef(Strict):
    """A tool of your own, with how to run it."""

    ref: str = Field(description="FILE.py:FUNCTION (relative to the config) or MODULE:FUNCTION")
    isolated: bool = Field(False, description="run each call in a sandboxed child process, "
                                              "killed at the timeout")
    timeout: float = Field(5.0, gt=0, le=600, description="seconds per call")


MetricRef: Any = Field(None, description="exact_match | numeric_match | humaneval, or your own "
                                    "function: FILE.py:FUNCTION or MODULE:FUNCTION, "
                                    "(outputs, expected) -> float in [0, 1]")
ToolRefs: Any = Field([], description="your own tools besides the built-in calculator: "
                                 "FILE.py:FUNCTION, MODULE:FUNCTION or {ref, isolated, timeout}")


class CacheConfig(Strict):
    dir: str | None = None
    mode: CacheMode | None = None


class AgentConfig(Strict):
    """What a training run and a deployment share: the agent, its models, how it is scored,
    sampled and trained. Paths are relative to the config file."""

    agent: str = Field(description="the agent spec file")
    task: str | None = Field(None, description="the task description (default: the spec's)")
    models: ModelsConfig = ModelsConfig()
    metric: str | None = MetricRef
    metric_timeout: float = Field(30.0, gt=0, description="seconds a metric of your own may take "
                                  "on one example (past it, that example scores 0)")
    tools: list[str | ToolRef] = ToolRefs
    sampling: SamplingParams = AGENT_PARAMS
    meta_sampling: SamplingParams = META_PARAMS
    train: TrainConfig = TrainConfig()
    learning_rate: LearningRate = LearningRate()
    cache: CacheConfig = CacheConfig()

    def trainer(self, spec, agent_lm, optimizer_lm, tools, metric, run_dir, loss="language",
                **kwargs):
        """This config's Trainer (``learn.build_trainer``)."""
        return build_trainer(spec, agent_lm, optimizer_lm, metric=metric, loss=loss, tools=tools,
                             sampling=self.sampling, meta_sampling=self.meta_sampling,
                             train=self.train, learning_rate=self.learning_rate,
                             run_dir=run_dir, **kwargs)


class TrackingConfig(Strict):
    """Log the run to MLflow when it ends (the extra: pip install 'localsym[mlflow]')."""

    mlflow: str = Field("mlruns", description="MLflow's tracking URI, or a directory (relative "
                        "to the config) for its local file store")
    experiment: str = Field("localsym", min_length=1, description="the MLflow experiment")


class RunConfig(AgentConfig):
    name: str = "run"
    dataset: DatasetConfig
    loss: Literal["language", "metric", "logprob"] = "language"
    budget: Budget = Budget()
    run_dir: str | None = Field(None, description="default: runs/<name>-<date>-<time>")
    tracking: TrackingConfig | None = Field(None, description="experiment tracking (off unless "
                                            "given): {mlflow: mlruns, experiment: localsym}")

    @model_validator(mode="after")
    def _metric_for_metric_losses(self):
        if self.loss == "metric" and self.metric is None:
            raise ValueError("loss: metric needs a metric (exact_match, numeric_match, humaneval, "
                             "or FILE.py:FUNCTION)")
        return self


def run_name(path: Path) -> str:
    """A run's name from its config file (its folder's name for ``config.yaml``), safe as the
    start of a directory name: never empty, never starting with ``-`` or ``.``."""
    raw = path.resolve().parent.name if path.stem == "config" else path.stem
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", raw).lstrip("-.")
    return name or "run"


def load_config(path: str | Path) -> tuple[RunConfig, Path]:
    """The config and the directory its relative paths start from."""
    path = Path(path)
    data = load_document(path, "config", "check the path (examples/*/config.yaml are ready-made)")
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} is not a mapping", "write it as key: value pairs")
    data.setdefault("name", run_name(path))
    try:
        return RunConfig.model_validate(data), path.parent
    except ValidationError as err:
        raise validation_error(err, f"config {path}",
                               "see localsym.config.RunConfig for the fields") from None


class EvolvePolicy(Strict):
    """When and on what a deployed agent retrains itself."""

    every: int | None = Field(8, ge=1, description="start a round after this many new samples "
                                                   "with feedback; null: only on demand")
    min_samples: int = Field(4, ge=2, description="fewest samples a round trains on")
    holdout: float = Field(0.34, gt=0.0, lt=1.0, description="share of the collected samples "
                                                             "held back for the validation gate")
    unlabeled: bool = Field(False, description="also train on samples without feedback, scored "
                                               "by the language loss alone")
    max_samples: int = Field(64, ge=2, description="the most recent samples a round uses")


class DeployConfig(AgentConfig):
    """A self-evolving deployment (``localsym serve``): what training has (``AgentConfig``), and
    when it retrains."""

    metric: str = Field("exact_match", description=MetricRef.description)
    train: TrainConfig = TrainConfig(max_steps=2, batch_size=4)
    evolve: EvolvePolicy = EvolvePolicy()
    validation: str | None = Field(None, description="a fixed JSONL validation set, scored in "
                                                     "every round besides the held-back samples")


def load_deploy_config(path: str | Path) -> tuple[DeployConfig, Path]:
    """A deploy config file, or an agent spec file alone (everything else default)."""
    path = Path(path)
    data = load_document(path, "deploy config", "give an agent spec or a deploy config file")
    if isinstance(data, dict) and "nodes" in data:  # an agent spec itself
        return DeployConfig(agent=path.name), path.parent
    if not isinstance(data, dict):
        raise ConfigError(f"deploy config {path} is not a mapping", "write it as key: value pairs")
    try:
        return DeployConfig.model_validate(data), path.parent
    except ValidationError as err:
        raise validation_error(err, f"deploy config {path}",
                               "see localsym.config.DeployConfig for the fields") from None
