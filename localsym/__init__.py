"""localsym: agent symbolic learning (arXiv 2406.18532), local-first.

Agents are symbolic networks (workflow nodes are layers, prompts and tools their weights), trained
with language losses, language gradients and LLM optimizers, on open-weight GGUF models run
in-process by llama.cpp, every output forced into a pydantic schema, every call cached on disk.

    import localsym

    lm = localsym.open_lm()                                  # the embedded model, cached
    spec = localsym.PipelineSpec.load("agent.yaml")
    best = localsym.train(spec, train, val, lm=lm, metric="numeric_match")
    print(localsym.evaluate(localsym.Pipeline(best, lm), test, metric="numeric_match"))

The names below are imported on first use, so ``import localsym`` stays cheap.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_NAMES = {
    # the language-model layer
    "open_lm": "localsym.lm", "LM": "localsym.lm", "CachedLM": "localsym.lm",
    "SamplingParams": "localsym.lm", "Message": "localsym.lm",
    # the agent
    "PipelineSpec": "localsym.agent", "NodeSpec": "localsym.agent",
    "FieldSpec": "localsym.agent", "ToolSpec": "localsym.agent", "EdgeSpec": "localsym.agent",
    "Demonstration": "localsym.agent", "Pipeline": "localsym.agent",
    "Trajectory": "localsym.agent", "ToolRegistry": "localsym.agent",
    "default_tools": "localsym.agent",
    # data and metrics
    "Example": "localsym.data", "load_jsonl": "localsym.data", "load_table": "localsym.data",
    "Metric": "localsym.metrics", "MetricResult": "localsym.metrics",
    "METRICS": "localsym.metrics", "metric": "localsym.metrics",
    "register_metric": "localsym.metrics",
    # learning
    "Trainer": "localsym.learn", "TrainConfig": "localsym.learn", "TrainState": "localsym.learn",
    "LanguageLoss": "localsym.learn", "MetricLoss": "localsym.learn",
    "LogProbLoss": "localsym.learn", "default_optimizers": "localsym.learn",
    "train": "localsym.api", "evaluate": "localsym.api", "init_task": "localsym.api",
    # deployment
    "EvolvingAgent": "localsym.deploy",
    # errors
    "LocalsymError": "localsym.errors", "ConfigError": "localsym.errors",
}

__all__ = sorted(_NAMES) + ["__version__"]


def __getattr__(name: str):
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'localsym' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
