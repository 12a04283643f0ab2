"""Tools: Python callables registered by name, called by nodes with typed, schema-forced arguments.

A tool's *text* (description, usage notes) is a trainable weight and lives in the agent spec
(``ToolSpec``); its *code* and argument types live here. A call that raises, hangs past its
timeout, or returns something that is not JSON is recorded as a failure with its reason; it never
stops the forward pass.
"""

from __future__ import annotations

import ast
import functools
import inspect
import json
import logging
import math
import operator
import secrets
import sys
import threading
import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, Field, create_model

from localsym import refs
from localsym.agent.weights import ToolSpec
from localsym.errors import ConfigError
from localsym.sandbox import run_python
from localsym.text import valid_text

_ARG_TYPES = {str: str, int: int, float: float, bool: bool}
RESULT_LIMIT = 2000  # characters of a tool result kept in the trajectory and shown to the model


class ToolCallRecord(BaseModel):
    """One tool call in a trajectory."""

    tool: str
    args: dict[str, Any]
    result: str | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


# Argument patterns the structural search may try on any str argument of any tool: a bounded
# single-line value (a small model's free string can otherwise run on until its token limit).
GENERIC_ARG_PATTERNS = (r'[^"\\\n]{1,80}',)


@dataclass(frozen=True)
class Tool:
    name: str
    fn: Callable[..., Any]
    args_model: type[BaseModel]
    description: str
    timeout: float
    patterns: tuple[tuple[str, tuple[str, ...]], ...] = ()  # argument -> vetted regexes to try
    returns: str = "text"  # "number": only numeric outputs bind to it; "bool": it can check

    def pattern_menu(self, arg: str) -> tuple[str, ...]:
        """The patterns worth trying on ``arg``: the tool's own vetted ones, then generic ones."""
        own = dict(self.patterns).get(arg, ())
        return own + tuple(p for p in GENERIC_ARG_PATTERNS if p not in own)

    def str_args(self) -> list[str]:
        return [n for n, f in self.args_model.model_fields.items() if f.annotation is str]

    def spec(self) -> ToolSpec:
        """The default trainable text of this tool (from its docstring)."""
        return ToolSpec(name=self.name, description=self.description)


class ToolRegistry:
    """Tools by name. ``registry.register`` works as a decorator::

        tools = ToolRegistry()

        @tools.register
        def lookup(word: str) -> str:
            '''Look a word up in the glossary.'''
    """

    def __init__(self, tools: "ToolRegistry | None" = None):
        self._tools: dict[str, Tool] = dict(tools._tools) if tools else {}

    def register(self, fn: Callable | None = None, *, name: str | None = None,
                 timeout: float = 5.0, patterns: dict[str, tuple[str, ...]] | None = None,
                 returns: str | None = None):
        """Register ``fn`` as a tool. ``patterns``: for a str argument, regexes the value may be
        forced into (the structural search tries each, and keeps one only if it helps).
        ``returns``: "number", "text" or "bool", what its result is (default: from the return
        annotation, int or float being a number); a text output is bound only to a text tool,
        and a tool returning a bool may check a node's answer."""
        def add(f: Callable) -> Callable:
            if not callable(f) or not hasattr(f, "__name__"):
                raise ConfigError(f"{f!r} is not a function, so it cannot be a tool",
                                  "register a def with typed arguments")
            tool_name = name or f.__name__
            fields = {}
            hints = typing.get_type_hints(f)
            for p in inspect.signature(f).parameters.values():
                if hints.get(p.name) not in _ARG_TYPES:
                    raise ConfigError(f"tool {tool_name!r}: argument {p.name!r} has type "
                                      f"{hints.get(p.name)!r}",
                                      "use str, int, float or bool arguments")
                default = ... if p.default is inspect.Parameter.empty else p.default
                fields[p.name] = (_ARG_TYPES[hints[p.name]], Field(default))
            args_model = create_model(f"{tool_name}_args", **fields)
            doc = (inspect.getdoc(f) or tool_name).strip().splitlines()[0]
            menu = tuple((arg, tuple(p)) for arg, p in sorted((patterns or {}).items()))
            kind = returns or ("bool" if hints.get("return") is bool else
                               "number" if hints.get("return") in (int, float) else "text")
            tool = Tool(tool_name, f, args_model, doc, timeout, menu, kind)
            for arg, _ in menu:
                if arg not in tool.str_args():
                    raise ConfigError(f"tool {tool_name!r}: patterns name {arg!r}, which is not "
                                      "a str argument", "give patterns for str arguments only")
            self._tools[tool_name] = tool
            return f

        return add(fn) if fn is not None else add

    def names(self) -> list[str]:
        return sorted(self._tools)

    def get(self, name: str) -> Tool:
        if name not in self._tools:
            raise ConfigError(f"unknown tool {name!r}",
                              f"register it in the ToolRegistry (registered: {self.names()})")
        return self._tools[name]

    def call(self, name: str, args: dict[str, Any]) -> ToolCallRecord:
        """Run a tool with a wall-clock timeout; every failure is recorded, none raised."""
        start = time.perf_counter()
        record = ToolCallRecord(tool=name, args=args)
        try:
            tool = self.get(name)
            parsed = tool.args_model.model_validate(args)
        except Exception as err:
            record.error = f"bad call: {err}"
            return record
        box: dict[str, Any] = {}

        def target():
            try:
                box["value"] = tool.fn(**parsed.model_dump())
            except BaseException as err:  # noqa: BLE001 - a tool's failure is data
                box["error"] = f"{type(err).__name__}: {err}"

        worker = threading.Thread(target=target, daemon=True, name=f"tool-{name}")
        worker.start()
        worker.join(tool.timeout)
        record.seconds = time.perf_counter() - start
        if worker.is_alive():
            record.error = f"timed out after {tool.timeout:g}s"
            if name not in _HUNG:  # once per tool: a step that waits on it is not silent
                _HUNG.add(name)
                logging.getLogger("localsym").warning(
                    "tool %r did not answer within %gs (does it hang?): every call of it waits "
                    "that long, and the model is told it failed; fix the tool or give it a "
                    "shorter timeout (tools: [{ref: ..., timeout: SECONDS}])", name, tool.timeout)
        elif "error" in box:
            record.error = valid_text(box["error"])
        else:
            try:
                value = box["value"]
                text = value if isinstance(value, str) else json.dumps(value)
                record.result = valid_text(text[:RESULT_LIMIT])  # a lone surrogate: U+FFFD
            except (TypeError, ValueError) as err:
                kind = type(box['value']).__name__
                record.error = f"returned a value that is not JSON ({kind}): {err}"
            except RecursionError:
                record.error = (f"returned a {type(box['value']).__name__} nested too deeply to "
                                "write as JSON: return a flatter value (a text, a list of texts)")
        return record


_HUNG: set[str] = set()  # tools that timed out (warned once)


# -- built-in tools ------------------------------------------------------------------------------
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
           ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCS = {"sqrt": math.sqrt, "abs": abs, "round": round, "min": min, "max": max}


def _evaluate(node):
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
            and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise ValueError("exponent too large")
        return _BINOPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS \
            and not node.keywords:
        return _FUNCS[node.func.id](*[_evaluate(a) for a in node.args])
    raise ValueError(f"unsupported expression element {type(node).__name__}")


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression, e.g. 12*(3+4) or sqrt(2); returns the number."""
    value = _evaluate(ast.parse(expression.strip(), mode="eval"))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


# The calculator's vetted argument forms: one operation, a flat chain of operations, any bounded
# expression. Under such a pattern a small model writes the expression it would never compute.
CALCULATOR_PATTERNS = (r"[0-9]{1,9} ?[-+*/] ?[0-9]{1,9}",
                       r"[0-9]{1,9}( ?[-+*/] ?[0-9]{1,9}){0,15}",
                       r"[-+*/(). 0-9]{1,60}")


def default_tools() -> ToolRegistry:
    """A registry with the built-in tools (``calculator``)."""
    registry = ToolRegistry()
    registry.register(calculator, patterns={"expression": CALCULATOR_PATTERNS}, returns="number")
    return registry


# -- a user's own tools, named in a config ---------------------------------------------------------
def add_references(registry: ToolRegistry, entries, base) -> ToolRegistry:
    """Register the tools a config names (``tools: [tools.py:lookup, mypkg.tools:sort_words,
    {ref: tools.py:slow, isolated: true, timeout: 10}]``) in ``registry``; returns it."""
    for entry in entries:
        ref, isolated, timeout = (entry, False, 5.0) if isinstance(entry, str) else \
            (entry.ref, entry.isolated, entry.timeout)
        fn = refs.resolve(ref, base, "tool", "tools.py:lookup")
        if isolated:
            fn = _isolated(fn, ref, base, timeout)
        try:
            registry.register(fn, timeout=timeout + (5.0 if isolated else 0.0))
        except ConfigError as err:
            raise ConfigError(f"tool reference {ref!r}: {err.cause}", err.fix) from None
        except Exception as err:  # a class, a builtin, something with no readable signature
            raise ConfigError(f"tool reference {ref!r} is not a function with typed arguments "
                              f"({type(err).__name__}: {str(err)[:120]})",
                              "point at a def with str/int/float/bool arguments") from None
    return registry


_ISOLATED = r'''
import importlib, importlib.util, json, sys
sys.path[:0] = {path!r}
file, name = {file!r}, {name!r}
if file.endswith(".py"):
    spec = importlib.util.spec_from_file_location("localsym_tool", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
else:
    module = importlib.import_module(file)
value = getattr(module, name)(**json.loads({args!r}))
print({mark!r} + json.dumps(value))
'''


def _isolated(fn: Callable, ref: str, base, timeout: float) -> Callable:
    """``fn`` run in a child process with the sandbox's limits (``localsym.sandbox``):
    a tool that hangs is killed at ``timeout`` with its whole process group, and cannot harm the
    run."""
    module_part, _, name = ref.rpartition(":")
    file = str((Path(base) / module_part).resolve()) if module_part.endswith(".py") \
        else module_part
    path = [str(Path(base).resolve())] + [p for p in sys.path if p]

    @functools.wraps(fn)
    def proxy(**kwargs):
        mark = f"localsym-result-{secrets.token_hex(8)}:"
        code = _ISOLATED.format(path=path, file=file, name=name, args=json.dumps(kwargs),
                                mark=mark)
        result = run_python(code, timeout=timeout, readable=tuple(path))
        if result.timed_out:
            raise TimeoutError(f"killed after {timeout:g}s (isolated)")
        line = next((t for t in result.output.splitlines() if t.startswith(mark)), None)
        if not result.ok or line is None:
            tail = result.output.strip().splitlines()[-1:] or [f"exit {result.returncode}"]
            raise RuntimeError(f"isolated tool failed: {tail[0][:300]}")
        return json.loads(line[len(mark):])

    return proxy
