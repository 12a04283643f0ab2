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
    feedback: str | None = None  # what a person said about an earlier answer (self-evolving use)


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


def _explain_fields(metric: Metric):
    def explain(outputs: dict, expected: dict) -> str:
        wrong = [f"{k} was {outputs.get(k)!r}, expected {v!r}" for k, v in expected.items()
                 if metric({k: outputs.get(k)}, {k: v}) < 1.0]
        return "; ".join(wrong) or "correct"
    return explain


exact_match.explain = _explain_fields(exact_match)
numeric_match.explain = _explain_fields(numeric_match)


def _program(outputs: dict, expected: dict, nonce: str) -> str:
    code = str(outputs.get("code", ""))
    entry = expected["entry_point"]
    if f"def {entry}" not in code and "prompt" in expected:  # a body only: put it under its header
        code = expected["prompt"] + code
    # the tests passed only if the program reaches its last line: an early exit(0) in the
    # model's code cannot pass, since it cannot know the nonce
    return f"{code}\n\n{expected['test']}\n\ncheck({entry})\nprint({nonce!r})\n"


def _run_tests(outputs: dict, expected: dict):
    import secrets

    from localsym.sandbox import run_python

    nonce = f"localsym-passed-{secrets.token_hex(8)}"
    result = run_python(_program(outputs, expected, nonce), timeout=10)
    return result, result.ok and result.output.rstrip().endswith(nonce)


def humaneval(outputs: dict, expected: dict) -> float:
    """1.0 if the generated ``code`` passes the problem's tests (run in the sandbox of
    ``localsym.sandbox``), else 0.0. ``expected`` holds ``entry_point`` and ``test``."""
    return 1.0 if _run_tests(outputs, expected)[1] else 0.0


def _explain_humaneval(outputs: dict, expected: dict) -> str:
    result, passed = _run_tests(outputs, expected)
    if passed:
        return "the code passes the tests"
    if result.timed_out:
        return "the code did not finish within 10 s"
    if result.ok:
        return "the program exited before the tests ran to the end"
    return "the tests failed: " + result.output.strip().splitlines()[-1][:300] if result.output.strip() \
        else f"the tests failed (exit {result.returncode})"


humaneval.explain = _explain_humaneval
METRICS: dict[str, Metric] = {"exact_match": exact_match, "numeric_match": numeric_match,
                              "humaneval": humaneval}


def metric(name: str) -> Metric:
    if name not in METRICS:
        raise ConfigError(f"unknown metric {name!r}", f"use one of {sorted(METRICS)}")
    return METRICS[name]


def generate_examples(lm, spec, count: int, seed: int = 0, with_expected: bool = True,
                      params=None) -> list[Example]:
    """Examples written by an LLM from the agent's task description alone (for a task with no
    dataset). Inputs follow the spec's input fields; with ``with_expected`` the answer follows its
    final outputs. Sampled with a per-example seed, duplicates dropped; deterministic."""
    from pydantic import create_model

    from localsym.agent.pipeline import outputs_model
    from localsym.lm.base import SamplingParams
    from localsym.templates import render

    py = {"str": str, "int": int, "float": float, "bool": bool, "list[str]": list[str]}
    inputs_model = create_model("GeneratedInputs", **{f.name: (py[f.type], ...) for f in spec.inputs})
    last = [n for n in spec.nodes if not spec.successors(n.name)][-1]
    fields = {"inputs": (inputs_model, ...)}
    if with_expected:
        fields["expected"] = (outputs_model(f"{last.name}_expected", last.outputs, ()), ...)
    schema = create_model("GeneratedExample", **fields)
    params = params or SamplingParams(temperature=0.9, max_tokens=192, max_tokens_limit=384,
                                      on_limit="close")
    out: list[Example] = []
    seen: list[str] = []
    for attempt in range(count * 3):
        if len(out) >= count:
            break
        prompt = render("generate_data.j2", task=spec.description or spec.name,
                        inputs=spec.inputs, outputs=last.outputs if with_expected else [],
                        seen=seen[-5:], index=len(out) + 1)
        value = lm.generate([{"role": "user", "content": prompt}], schema,
                            params.model_copy(update={"seed": seed * 100003 + attempt}))
        key = json.dumps(value.inputs.model_dump(), sort_keys=True)
        if key in seen:
            continue
        seen.append(key)
        out.append(Example(id=f"generated-{len(out)}", inputs=value.inputs.model_dump(),
                           expected=value.expected.model_dump() if with_expected else None))
    return out
