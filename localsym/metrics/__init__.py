"""Metrics: ``(outputs, expected) -> score in [0, 1]`` (or a MetricResult with feedback), the
built-in ones by name, a user's own by reference, and the one function that scores with any of
them (``score``). HumanEval's metric runs code in ``localsym/sandbox.py``."""

from __future__ import annotations

import functools
import logging
import re
import threading
from pathlib import Path
from typing import Any, Callable, NamedTuple, Protocol, runtime_checkable

import numpy as np

from localsym import refs
from localsym.errors import ConfigError
from localsym.metrics.humaneval import explain_humaneval, humaneval


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
    except (Exception, SystemExit) as err:  # the user's code: a failure (an exit too) costs
        # the example, not the run
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
                 if metric({k: outputs.get(k)}, {k: v}) < 1.0]  # type: ignore[operator]
        return "; ".join(wrong) or "correct"
    return explain


_EXPLAINERS[exact_match] = _explain_fields(exact_match)
_EXPLAINERS[numeric_match] = _explain_fields(numeric_match)


_EXPLAINERS[humaneval] = explain_humaneval
METRICS: dict[str, Metric] = {"exact_match": exact_match, "numeric_match": numeric_match,
                              "humaneval": humaneval}


HANGS_AFTER = 3  # timeouts in a row after which a metric looks like one that hangs


def with_timeout(fn: Metric, seconds: float) -> Metric:
    """``fn`` run in a thread of its own: a result in ``seconds``, or a TimeoutError (the thread
    is left behind, a daemon; a metric cannot be killed, only abandoned). Each timeout costs
    its example only; after HANGS_AFTER in a row, one warning says what the run will pay if the
    metric hangs (its timeout on every example of every candidate) and how to stop it."""
    late = [0, False]  # timeouts in a row; warned yet

    @functools.wraps(fn)
    def timed(outputs: dict, expected: dict):
        box: dict[str, Any] = {}

        def target():
            try:
                box["value"] = fn(outputs, expected)
            except BaseException as err:  # noqa: BLE001 - re-raised in the caller
                box["error"] = err

        worker = threading.Thread(target=target, daemon=True, name="localsym-metric")
        worker.start()
        worker.join(seconds)
        if worker.is_alive():
            late[0] += 1
            if late[0] >= HANGS_AFTER and not late[1]:
                late[1] = True
                log.warning("metric %s did not return within %gs on %d examples in a row: if "
                            "it hangs, every example of every candidate waits %gs for it (a "
                            "step of 16 candidates on 8 examples: %.1f min more) and scores 0. "
                            "Fix the metric, or stop the run (Ctrl-C keeps what was computed) "
                            "and raise metric_timeout if it is only slow",
                            getattr(fn, "__name__", "the metric"), seconds, late[0], seconds,
                            16 * 8 * seconds / 60)
            raise TimeoutError(f"it did not return within {seconds:g}s")
        late[0] = 0
        if "error" in box:
            raise box["error"]
        return box["value"]

    timed.localsym_timeout = seconds  # type: ignore[attr-defined]
    return timed


BUILT_IN = frozenset({"exact_match", "numeric_match", "humaneval"})


def register_metric(name: str, fn: Metric) -> Metric:
    """Make ``fn`` available by name (``metric: NAME`` in a config, ``--metric NAME``); a
    built-in name is never replaced."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a metric's name must be a text, not {name!r}", "pass a name")
    if not callable(fn):
        raise ConfigError(f"metric {name!r} is {fn!r}, not a function",
                          "pass a function (outputs, expected) -> float")
    if name in BUILT_IN:
        raise ConfigError(f"{name!r} is a built-in metric and cannot be replaced",
                          "register yours under another name")
    METRICS[name] = fn
    return fn


METRIC_TIMEOUT = 30.0  # seconds a metric of the user's own may take on one example


def metric(name: str | Metric, base: str | Path = ".", timeout: float = METRIC_TIMEOUT
           ) -> Metric:
    """A metric by name (a built-in or registered one), by reference (``pkg.mod:fn``, or
    ``file.py:fn`` relative to ``base``; run under ``timeout`` seconds an example: one that
    hangs costs its example, never the run), or a callable itself."""
    if callable(name):
        return name
    if not isinstance(name, str):
        raise ConfigError(f"metric {name!r} is neither a name nor a function",
                          f"use one of {sorted(METRICS)}, FILE.py:FUNCTION, MODULE:FUNCTION, or "
                          "a function (outputs, expected) -> float")
    if refs.is_reference(name):
        fn = refs.resolve(name, base, "metric", "metrics.py:partial_credit")
        refs.check_arity(fn, 2, name, "metric", "(outputs: dict, expected: dict) -> float")
        return with_timeout(fn, timeout)
    if name not in METRICS:
        raise ConfigError(f"unknown metric {name!r}",
                          f"use one of {sorted(METRICS)}, or your own function as "
                          "FILE.py:FUNCTION or MODULE:FUNCTION")
    return METRICS[name]
