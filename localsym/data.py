"""Examples, datasets and metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from localsym.errors import ConfigError


class Example(BaseModel):
    """One sample: the agent's inputs, and the expected outputs when there is a ground truth."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    inputs: dict[str, Any]
    expected: dict[str, Any] | None = None


def load_jsonl(path: str | Path) -> list[Example]:
    """Examples from a JSONL file, one ``{"id"?, "inputs": {...}, "expected"?: {...}}`` a line.
    A bad line is an error naming the file and line."""
    path = Path(path)
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError as err:
        raise ConfigError(f"cannot read dataset {path}: {err.strerror}", "check the path") from None
    out = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            row.setdefault("id", f"{path.stem}-{no}")
            out.append(Example.model_validate(row))
        except (ValueError, ValidationError, AttributeError) as err:
            raise ConfigError(f"{path}:{no}: not a valid example ({str(err).splitlines()[0]})",
                              'each line must be {"inputs": {...}, "expected": {...}}') from None
    return out


def split(examples: list[Example], fractions: tuple[float, ...], seed: int = 0
          ) -> list[list[Example]]:
    """Shuffle with ``seed`` and cut into parts of the given fractions (e.g. (0.5, 0.25, 0.25))."""
    order = np.random.default_rng(seed).permutation(len(examples))
    shuffled = [examples[i] for i in order]
    bounds = np.cumsum([0, *fractions]) / sum(fractions) * len(examples)
    return [shuffled[int(round(a)):int(round(b))] for a, b in zip(bounds, bounds[1:])]


# -- metrics: (outputs, expected) -> score in [0, 1] ---------------------------------------------
Metric = Callable[[dict[str, Any], dict[str, Any]], float]


def _norm(value: Any) -> str:
    return re.sub(r"\s+", " ", str(value)).strip().strip(".").lower()


def exact_match(outputs: dict, expected: dict) -> float:
    """Share of expected fields the outputs match (case- and whitespace-insensitive)."""
    if not expected:
        return 0.0
    return sum(_norm(outputs.get(k)) == _norm(v) for k, v in expected.items()) / len(expected)


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    found = re.findall(r"-?\d+(?:\.\d+)?", str(value).replace(",", ""))
    return float(found[-1]) if found else None


def numeric_match(outputs: dict, expected: dict) -> float:
    """Share of expected fields whose number (the last one in the text) equals the expected one."""
    if not expected:
        return 0.0
    hits = 0
    for k, v in expected.items():
        got, want = _number(outputs.get(k)), _number(v)
        hits += got is not None and want is not None and abs(got - want) <= 1e-6 * max(1, abs(want))
    return hits / len(expected)


METRICS: dict[str, Metric] = {"exact_match": exact_match, "numeric_match": numeric_match}


def metric(name: str) -> Metric:
    if name not in METRICS:
        raise ConfigError(f"unknown metric {name!r}", f"use one of {sorted(METRICS)}")
    return METRICS[name]
