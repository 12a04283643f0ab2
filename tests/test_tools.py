"""Tools: typed registration, the safe calculator, and failures recorded instead of raised."""

from __future__ import annotations

import time

import pytest

from conftest import RoutedLM
from localsym.agent import Pipeline, PipelineSpec, ToolRegistry, default_tools
from localsym.agent.tools import calculator
from localsym.errors import ConfigError


def test_calculator_is_arithmetic_only():
    assert calculator("12*(3+4)") == "84" and calculator("7/2") == "3.5"
    assert calculator("sqrt(16)") == "4"
    for hostile in ("__import__('os').system('true')", "2**10000", "open('x')", "[1]*9"):
        with pytest.raises(ValueError):
            calculator(hostile)


def test_failures_are_recorded_not_raised():
    tools = ToolRegistry()

    @tools.register
    def boom(x: int) -> int:
        """Always fails."""
        raise RuntimeError("kaput")

    @tools.register(timeout=0.2)
    def hang(x: int) -> int:
        """Never returns in time."""
        time.sleep(5)
        return x

    @tools.register
    def weird(x: int) -> object:
        """Returns something that is not JSON."""
        return object()

    assert tools.call("boom", {"x": 1}).error == "RuntimeError: kaput"
    start = time.perf_counter()
    hung = tools.call("hang", {"x": 1})
    assert hung.error == "timed out after 0.2s" and time.perf_counter() - start < 2
    assert "not JSON" in tools.call("weird", {"x": 1}).error
    assert "bad call" in tools.call("boom", {"x": "not a number"}).error
    assert "unknown tool" in tools.call("nope", {}).error
    assert tools.get("boom").spec().description == "Always fails."


def test_only_typed_arguments_can_be_registered():
    with pytest.raises(ConfigError, match="use str, int, float or bool"):
        ToolRegistry().register(lambda x: x)


def test_a_failing_tool_does_not_stop_the_forward_pass():
    tools = default_tools()

    @tools.register
    def flaky(query: str) -> str:
        """Look something up (broken)."""
        raise ConnectionError("offline")

    spec = PipelineSpec.from_data({
        "inputs": [{"name": "q"}],
        "tools": [{"name": "flaky", "description": "Look something up."}],
        "nodes": [{"name": "ask", "inputs": ["q"], "tools": ["flaky"],
                   "outputs": [{"name": "answer"}]}]})
    lm = RoutedLM({"ask_step": lambda m: (
        {"action": {"tool": "flaky", "args": {"query": "x"}}} if len(m) < 4
        else {"action": {"tool": "finish", "outputs": {"answer": "done anyway"}}})})
    traj = Pipeline(spec, lm, tools).forward({"q": "hi"})
    assert traj.ok and traj.outputs == {"answer": "done anyway"}
    (call,) = traj.records[0].tool_calls
    assert call.error == "ConnectionError: offline"
    assert traj.records[0].messages[-1]["content"] == "Result of flaky: ERROR: ConnectionError: offline"
