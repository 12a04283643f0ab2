"""A run's agent spec and its datasets: loaded, split, and checked before anything is trained.

What would make every score meaningless is an error; what is merely suspicious, a warning.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from localsym.agent import PipelineSpec
from localsym.config import RunConfig
from localsym.data import Example, load_table, split
from localsym.errors import ConfigError
from localsym.generate import generate_examples

FEW_EXAMPLES = 8  # rows a user may give as both training and validation with no warning


def load_spec(config: RunConfig, base: Path) -> PipelineSpec:
    spec = PipelineSpec.load(base / config.agent)
    if config.task:
        spec = spec.model_copy(update={"description": config.task})
    return spec


def load_splits(config: RunConfig, base: Path, spec: PipelineSpec, lm) -> dict[str, list[Example]]:
    ds = config.dataset
    if ds.generate is not None:
        examples = generate_examples(lm, spec, ds.generate.count, ds.generate.seed,
                                     ds.generate.with_expected)
        parts = dict(zip(("train", "val", "test"), split(examples, ds.split, ds.generate.seed)))
    elif ds.path is not None:
        parts = dict(zip(("train", "val", "test"),
                         split(load_table(base / ds.path, ds.fields), ds.split,
                               config.train.seed)))
    else:
        parts = {name: load_table(base / getattr(ds, name), ds.fields) if getattr(ds, name) else []
                 for name in ("train", "val", "test")}
    if ds.limit:
        parts = {k: v[:ds.limit] for k, v in parts.items()}
    for name, rows in parts.items():
        for ex in rows:
            missing = [f.name for f in spec.inputs if f.name not in ex.inputs]
            if missing:
                raise ConfigError(f"{name} example {ex.id} lacks the agent's inputs {missing}",
                                  "make the dataset's inputs match the spec's input fields")
    if not parts["train"] or not parts["val"]:
        raise ConfigError("the dataset gives an empty train or validation split",
                          "add examples or change dataset.split")
    check_examples(parts, spec, config.metric)
    return parts


def check_examples(parts: dict[str, list[Example]], spec: PipelineSpec, metric_name) -> None:
    """What would make every score meaningless is an error; what is merely suspicious, a
    warning. A field-comparing metric (exact_match, numeric_match) scores an expected field the
    agent never outputs 0 on every example: an error. An example in both train and validation
    (same id or same inputs) makes the gate reward memorizing: a warning."""
    finals = set(spec.final_outputs())
    if metric_name in ("exact_match", "numeric_match"):
        for name, rows in parts.items():
            for ex in rows:
                extra = sorted(set(ex.expected or {}) - finals)
                if extra:
                    raise ConfigError(
                        f"{name} example {ex.id} expects {extra}, which the agent never outputs "
                        f"(its answer has {sorted(finals)}): {metric_name} would score every "
                        "example 0", "rename the expected fields to the agent's outputs (a field "
                        "map can: dataset.fields), or give the last node those outputs")
    if "train" not in parts or "val" not in parts:
        return
    seen = {ex.id: ex for ex in parts["train"]}
    inputs = {json.dumps(ex.inputs, sort_keys=True, default=str) for ex in parts["train"]}
    both = [ex.id for ex in parts["val"] if ex.id in seen or
            json.dumps(ex.inputs, sort_keys=True, default=str) in inputs]
    if both and len(both) == len(parts["val"]) == len(parts["train"]) <= FEW_EXAMPLES:
        logging.getLogger("localsym").info(
            "the validation rows are the training rows (a few examples): a program is offered "
            "only where it takes fewer bits than the answers it explains; the test split says "
            "how well it holds")
    elif both:
        logging.getLogger("localsym").warning(
            "%d validation example(s) also in the training split (%s): the gate then rewards "
            "memorizing them", len(both), ", ".join(both[:5]))
