"""Examples, datasets and metrics."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Callable, NamedTuple, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from localsym.errors import ConfigError
from localsym.io import jsonl_lines, read_text, validation_error


class Example(BaseModel):
    """One sample: the agent's inputs, and the expected outputs when there is a ground truth."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    inputs: dict[str, Any]
    expected: dict[str, Any] | None = None
    feedback: str | None = None  # what a person said about an earlier answer (self-evolving use)

    @model_validator(mode="after")
    def _encodable(self):
        bad = unencodable(self.model_dump())
        if bad:
            raise ValueError(f"{bad} holds a lone surrogate (not valid Unicode text)")
        return self


def unencodable(value, where: str = "") -> str | None:
    """Where in ``value`` (nested dicts, lists, strings) a string cannot be encoded as UTF-8 (a
    lone surrogate such as "\\ud800", which JSON allows and no file or cache key can hold);
    None if nowhere."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where or "the text"
        return None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = unencodable(item, f"{where}.{key}" if where else str(key)) or \
            unencodable(key, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


def load_jsonl(path: str | Path) -> list[Example]:
    """Examples from a JSONL file, one ``{"id"?, "inputs": {...}, "expected"?: {...}}`` a line.
    A bad line is an error naming the file and line."""
    path = Path(path)
    out = []
    for no, row in _json_rows(path):
        row.setdefault("id", f"{path.stem}-{no}")
        try:
            out.append(Example.model_validate(row))
        except ValidationError as err:
            raise validation_error(err, f"{path}:{no}: not a valid example",
                                   'each line must be {"inputs": {...}, "expected": {...}}') \
                from None
    return out


class FieldMap(BaseModel):
    """Which column of a user's file is which field: ``inputs: {question: q}`` means the
    agent's input ``question`` is the column ``q``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    inputs: dict[str, str]
    expected: dict[str, str] | None = None
    id: str | None = None


def load_table(path: str | Path, fields: FieldMap | dict | None = None) -> list[Example]:
    """Examples from a JSONL or CSV file. Without ``fields`` a JSONL file is in localsym's own
    shape (see ``load_jsonl``); with ``fields`` every row (a CSV row, or a flat JSON object a
    line) is mapped to inputs and expected outputs, so a file does not have to be rewritten."""
    path = Path(path)
    if isinstance(fields, dict):
        fields = FieldMap.model_validate(fields)
    is_csv = path.suffix.lower() in (".csv", ".tsv")
    if fields is None and not is_csv:
        return _unique(load_jsonl(path), path)
    if fields is None:
        raise ConfigError(f"dataset {path} is a CSV file and no field map was given",
                          "add dataset.fields, e.g. {inputs: {question: q}, expected: {answer: "
                          "a}} (agent field: column)")
    rows = _csv_rows(path) if is_csv else _json_rows(path)
    if not rows:
        raise ConfigError(f"dataset {path} has no rows", "add examples to it")
    wanted = list(fields.inputs.values()) + list((fields.expected or {}).values()) + \
        ([fields.id] if fields.id else [])
    out = []
    for no, row in rows:
        missing = [c for c in wanted if c not in row]
        if missing:
            raise ConfigError(f"{path}:{no}: no column {missing} (it has {sorted(row)})",
                              "fix dataset.fields (agent field: column) or the file")
        out.append(Example(
            id=str(row[fields.id]) if fields.id else f"{path.stem}-{no}",
            inputs={k: row[c] for k, c in fields.inputs.items()},
            expected={k: row[c] for k, c in fields.expected.items()} if fields.expected else None))
    return _unique(out, path)


def _csv_rows(path: Path) -> list[tuple[int, dict]]:
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            return [(no, row) for no, row in enumerate(reader, 2)
                    if any((v or "").strip() for v in row.values())]
    except OSError as err:
        raise ConfigError(f"cannot read dataset {path}: {err.strerror}", "check the path") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise ConfigError(f"dataset {path} is not a readable UTF-8 CSV file ({err})",
                          "save it as UTF-8 CSV") from None


def _json_rows(path: Path) -> list[tuple[int, dict]]:
    lines = jsonl_lines(read_text(path, "dataset"))
    out = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise ConfigError(f"{path}:{no}: not JSON ({err})", "one JSON object a line") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{path}:{no}: not a JSON object", "one JSON object a line")
        out.append((no, row))
    return out


def _unique(examples: list[Example], path: Path) -> list[Example]:
    seen: dict[str, int] = {}
    for i, ex in enumerate(examples):
        if ex.id in seen:
            raise ConfigError(f"dataset {path}: the id {ex.id!r} is used twice (examples "
                              f"{seen[ex.id] + 1} and {i + 1})",
                              "give every example its own id (ids name examples in the events, "
                              "the Pareto front and resume)")
        seen[ex.id] = i
    return examples


def split(examples: list[Example], fractions: tuple[float, ...], seed: int = 0
          ) -> list[list[Example]]:
    """Shuffle with ``seed`` and cut into parts of the given fractions (e.g. (0.5, 0.25, 0.25))."""
    order = np.random.default_rng(seed).permutation(len(examples))
    shuffled = [examples[i] for i in order]
    bounds = np.cumsum([0, *fractions]) / sum(fractions) * len(examples)
    return [shuffled[int(round(a)):int(round(b))] for a, b in zip(bounds, bounds[1:])]


# -- metrics: (outputs, expected) -> score in [0, 1] ---------------------------------------------
class MetricResult(NamedTuple):
    """A score in [0, 1] and, optionally, what was wrong (the loss shows it to the optimizers)."""

    score: float
    feedback: str = ""


@runtime_checkable
class Metric(Protocol):
    """What a metric is: ``(outputs, expected) -> float | MetricResult``, the score in [0, 1].
    Any function of that shape works, e.g. ``metric: metrics.py:partial_credit`` in a config."""

    def __call__(self, outputs: dict[str, Any], expected: dict[str, Any]) -> float | MetricResult:
        ...


log = logging.getLogger(__name__)
_EXPLAINERS: dict[Callable, Callable[[dict, dict], str]] = {}  # built-ins: a feedback function
_failures_reported: set[str] = set()


def score(metric: Metric, outputs: dict[str, Any], expected: dict[str, Any],
          explain: bool = False) -> MetricResult:
    """The one way localsym scores with a metric. A metric that raises, or returns anything but
    a number in [0, 1] (or a MetricResult holding one), costs that example only: score 0, and
    the reason as its feedback (and a warning, once per reason). ``explain``: also fill in the
    feedback of a built-in metric that returns a bare number."""
    name = getattr(metric, "__name__", type(metric).__name__)
    try:
        value = metric(outputs, expected)
        result = value if isinstance(value, MetricResult) else MetricResult(value) \
            if not isinstance(value, tuple) else MetricResult(*value)
        number = result.score
        if isinstance(number, bool) or not isinstance(number, (int, float, np.number)) or \
                not 0.0 <= float(number) <= 1.0:
            raise TypeError(f"returned {number!r}, not a number in [0, 1]")
        result = MetricResult(float(number), str(result.feedback or ""))
    except Exception as err:  # the user's code: any failure costs the example, not the run
        reason = f"metric {name} failed: {type(err).__name__}: {err}"[:500]
        if reason not in _failures_reported:
            _failures_reported.add(reason)
            log.warning("%s (the example scores 0)", reason)
        return MetricResult(0.0, reason)
    if explain and not result.feedback and metric in _EXPLAINERS:
        result = MetricResult(result.score, _EXPLAINERS[metric](outputs, expected))
    return result


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


_EXPLAINERS[exact_match] = _explain_fields(exact_match)
_EXPLAINERS[numeric_match] = _explain_fields(numeric_match)


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


_EXPLAINERS[humaneval] = _explain_humaneval
METRICS: dict[str, Metric] = {"exact_match": exact_match, "numeric_match": numeric_match,
                              "humaneval": humaneval}


def register_metric(name: str, fn: Metric) -> Metric:
    """Make ``fn`` available by name (``metric: NAME`` in a config, ``--metric NAME``)."""
    METRICS[name] = fn
    return fn


def metric(name: str | Metric, base: str | Path = ".") -> Metric:
    """A metric by name (a built-in or registered one), by reference (``pkg.mod:fn``, or
    ``file.py:fn`` relative to ``base``), or a callable itself."""
    from localsym import refs

    if callable(name):
        return name
    if refs.is_reference(name):
        fn = refs.resolve(name, base, "metric", "metrics.py:partial_credit")
        refs.check_arity(fn, 2, name, "metric", "(outputs: dict, expected: dict) -> float")
        return fn
    if name not in METRICS:
        raise ConfigError(f"unknown metric {name!r}",
                          f"use one of {sorted(METRICS)}, or your own function as "
                          "FILE.py:FUNCTION or MODULE:FUNCTION")
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
