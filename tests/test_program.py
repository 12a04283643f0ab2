"""The one program form: a typed expression tree written as a short expression, read back as
the same tree, checked kind by kind, run by one interpreter; ``bind`` and ``arg_from`` are
written forms of it (``called(tool)``, a call before the model), and a guard leaves the other
examples to the model."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import RoutedLM
from localsym.agent import Pipeline, PipelineSpec
from localsym.agent import expr as E
from localsym.agent.functions import FUNCTIONS
from localsym.agent.glue import After, GlueError, Item, Words
from localsym.agent.program import Program
from localsym.agent.tools import ToolRegistry
from localsym.errors import ConfigError

WRITTEN = [
    "question | numbers | item(0)",
    "concat(first, ' ', last | slice(end=1), '.')",
    "a if contains(s, '.') else concat(s, '.0')",
    "len(x) + 1",
    "convert(amount=question | numbers | item(0), unit='km')",
    "called('calc') | map({'true': 'Yes', 'false': 'No'})",
    "not a < b and c == d",
    "substr(s, 0, find(s, '@'))",
    "a + b - (c - 1)",
    "x | after(': ', 'last')",
    r"question | regex(r'units of (\w+)', 1)",
    "concat('The answer is ', calc(expression=question | numbers | join('*')), '.')",
]


@pytest.mark.parametrize("text", WRITTEN)
def test_a_written_program_reads_back_as_the_same_tree(text):
    tree = E.parse(text)
    assert E.text(tree) == text and E.parse(E.text(tree)) == tree


def _trees():
    leaf = st.one_of(st.sampled_from(["a", "b", "question"]).map(E.Input),
                     st.one_of(st.text(max_size=4), st.integers(-3, 30)).map(E.Const))

    def grow(inner):
        glue = st.tuples(st.sampled_from([Words(), Item(index=1), After(delimiter=", ")]),
                         inner).map(lambda t: E.Glue(*t))
        fns = st.sampled_from(sorted(FUNCTIONS)).flatmap(lambda name: st.tuples(
            *[inner] * len(FUNCTIONS[name].takes)).map(
            lambda args, n=name: E.concat(*args) if n == "concat" else E.Apply(n, args)))
        cond = st.tuples(inner, inner, inner).map(lambda t: E.If(*t))
        call = st.tuples(st.sampled_from(["calc", "convert"]), inner).map(
            lambda t: E.Call(t[0], (("x", t[1]),)))
        return st.one_of(glue, fns, cond, call)
    return st.recursive(leaf, grow, max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(_trees())
def test_any_tree_prints_as_text_that_parses_to_itself(tree):
    assert E.parse(E.text(tree)) == tree


@pytest.mark.parametrize("text, why", [
    ("question.upper()", "not part of the program language"),
    ("upper(question)", "not an operation"),
    ("calc('1+1')", "not an operation"),
    ("x | shout", "glue operation"),
    ("substr(x, 1)", "takes 3 values"),
    ("__import__('os')", "not an operation"),
    ("(" * 400 + "x" + ")" * 400, "nested too deeply|not a program expression"),
])
def test_what_is_not_in_the_language_is_named_in_one_line(text, why):
    with pytest.raises(ValueError, match=why):
        E.parse(text)


def test_kinds_are_checked_and_the_first_misfit_named():
    scope = E.Scope({"s": "text", "n": "number"}, ("calc",))
    assert E.check(E.parse("len(s) + n"), scope) == "number"
    assert E.check(E.parse("s if contains(s, 'x') else 'y'"), scope) == "text"
    for bad, why in [("len(s) + s", "takes a number"), ("s | words", None),
                     ("calc(x=s | words)", "a list"), ("other(x=s)", "does not use"),
                     ("t", "not an input")]:
        if why is None:
            assert E.check(E.parse(bad), scope) == "list"
            continue
        with pytest.raises(ValueError, match=why):
            E.check(E.parse(bad), scope)


def test_the_functions_follow_the_string_theory_where_it_is_total():
    ctx = E.Context(inputs={"s": "john.smith@mail.com", "t": "Nancy", "n": 3})
    run = lambda text: E.evaluate(E.parse(text), ctx)  # noqa: E731
    assert run("substr(s, 0, find(s, '@'))") == "john.smith"
    assert run("substr(s, 50, 2)") == "" and run("at(s, -1)") == "" and run("find(s, 'x')") == -1
    assert run("find_from(s, '.', 5)") == 15 and run("replace(s, '.', ' ')") == \
        "john smith@mail.com"
    assert run("replace_all(s, '.', '')") == "johnsmith@mailcom"
    assert run("concat(t | slice(end=1), '. ', right(s, 3))") == "N. com"
    assert run("'yes' if len(t) < n + 3 else 'no'") == "yes"
    assert run("to_text(n + 1)") == "4" and run("occurrences(s, 'm')") == 3
    with pytest.raises(GlueError):
        run("t | after('@')")
    with pytest.raises(GlueError):
        run("rept(s, 5000)")


def spec_with(node: dict) -> PipelineSpec:
    return PipelineSpec.from_data({
        "inputs": [{"name": "question"}], "tools": [{"name": "calc", "description": "c"}],
        "nodes": [{"name": "solve", "inputs": ["question"], "tools": ["calc"],
                   "outputs": [{"name": "answer"}], **node}]})


def registry() -> ToolRegistry:
    tools = ToolRegistry()

    @tools.register
    def calc(expression: str) -> str:
        """Adds the numbers of an expression written a+b."""
        return str(sum(int(x) for x in expression.split("+")))
    return tools


def test_a_program_writes_literal_text_around_a_tool_result_with_no_model_call():
    spec = spec_with({"program": {"outputs": {
        "answer": "concat('The total is ', calc(expression=question | numbers | join('+')), '.')"
    }}})
    lm = RoutedLM({})
    traj = Pipeline(spec, lm, registry()).forward({"question": "Add 2 and 40"})
    assert traj.outputs == {"answer": "The total is 42."} and not lm.calls
    assert spec.model_dump(mode="json")["nodes"][0]["program"]["outputs"]["answer"].startswith(
        "concat('The total is ', calc(")


def test_bind_and_a_program_output_that_reads_the_model_call_are_one_form():
    """``bind`` is ``called(tool) | glue``: both bind the model's call the same way."""
    step = {"solve_step": lambda m: {"action": {"tool": "calc", "args": {"expression": "1+2"}}}}
    bound = spec_with({"bind": {"answer": {"tool": "calc", "via": [{"op": "int"}]}}})
    assert E.text(bound.node("solve").bound_values()["answer"]) == "called('calc') | int"
    written = spec_with({"program": {"outputs": {"answer": "called('calc') | int"}}})
    for spec in (bound, written):
        lm = RoutedLM(step)
        traj = Pipeline(spec, lm, registry()).forward({"question": "one plus two"})
        assert traj.outputs == {"answer": "3"} and len(lm.calls) == 1


def test_arg_from_is_a_call_written_before_the_model():
    spec = spec_with({"arg_from": {"calc.expression": {"input": "question",
                                                       "via": ["numbers", {"op": "join",
                                                                           "separator": "+"}]}},
                      "bind": {"answer": "calc"}})
    assert E.text(spec.node("solve").written_call()) == \
        "calc(expression=question | numbers | join('+'))"
    lm = RoutedLM({})
    assert Pipeline(spec, lm, registry()).forward({"question": "2 and 5"}).outputs == \
        {"answer": "7"} and not lm.calls


def test_a_guard_runs_the_program_where_it_holds_and_the_model_elsewhere():
    spec = spec_with({"program": {"outputs": {"answer": "question | after(': ')"},
                                  "guard": "startswith(question, 'Name: ')"}})
    lm = RoutedLM({"solve_step": lambda m: {"action": {"tool": "finish",
                                                        "outputs": {"answer": "model"}}}})
    pipeline = Pipeline(spec, lm, registry())
    assert pipeline.forward({"question": "Name: Ada"}).outputs == {"answer": "Ada"}
    assert not lm.calls
    assert pipeline.forward({"question": "Who: Ada"}).outputs == {"answer": "model"}
    assert len(lm.calls) == 1


def test_a_program_that_does_not_fit_the_node_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="reads 'nowhere'"):
        spec_with({"program": {"outputs": {"answer": "concat(nowhere, '!')"}}})
    with pytest.raises(ConfigError, match="not an output"):
        spec_with({"program": {"outputs": {"other": "question"}}})
    with pytest.raises(ConfigError, match="guard reads the inputs"):
        spec_with({"program": {"outputs": {"answer": "question"}, "guard": "called('calc')"}})
    assert Program(outputs={"answer": "question"}).tools() == []
