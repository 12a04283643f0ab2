"""The weights of a node, as data: typed fields, prompt pieces, demonstrations, the text of a
declared tool, and the names a trainable parameter goes by. Immutable pydantic values, shared
by ``NodeSpec`` (``agent/node.py``) and ``PipelineSpec`` (``agent/spec.py``)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from localsym.lm.schema_index import MAX_REPEAT_STATES, nested_unbounded, repeat_states

Identifier = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
FieldType = Literal["str", "int", "float", "bool", "list[str]"]
# The trainable text fields of a node's prompt, in the order they are shown to the model.
PROMPT_FIELDS = ("role", "task", "rules", "style", "output_instructions")


def node_param(node: str, *path: str) -> str:
    """The name of a node's trainable parameter, as ``Pipeline.parameters()`` yields it and the
    optimizers, their memory and the report use it: ``nodes.N.prompt.task``,
    ``nodes.N.demonstrations``, ``nodes.N.tools`` (``node_param(N)``: the prefix ``nodes.N.``)."""
    return ".".join(("nodes", node, *path)) if path else f"nodes.{node}."


def tool_param(tool: str, field: str) -> str:
    """The name of a declared tool's trainable text: ``tools.T.description``."""
    return f"tools.{tool}.{field}"


def check_pattern(pattern: str | None, where: str) -> str | None:
    """A regex the decoder will enforce; a bad one is an error naming ``where``."""
    if pattern is None:
        return None
    try:
        re.compile(pattern)
    except re.error as err:
        raise ValueError(f"{where}: pattern {pattern!r} is not a valid regular expression "
                         f"({err})") from None
    if pattern.startswith("^") or pattern.endswith("$"):
        raise ValueError(f"{where}: pattern {pattern!r} must not be anchored with ^ or $ (the "
                         "whole value always matches it)")
    if nested_unbounded(pattern):
        raise ValueError(f"{where}: pattern {pattern!r} repeats without a bound something that "
                         "repeats without a bound (like (a+)+): checking a value against it can "
                         "take exponential time; write it without the nesting (a+)")
    if repeat_states(pattern) > MAX_REPEAT_STATES:
        raise ValueError(f"{where}: pattern {pattern!r} repeats up to {repeat_states(pattern)} "
                         f"times (over {MAX_REPEAT_STATES}): the decoder's index would not fit in "
                         "memory; lower its {m,n} bounds or use * and +")
    return pattern


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FieldSpec(Frozen):
    """One typed field of a signature (an example input or a node output). ``choices`` makes a
    str output an enum: the decoder can produce nothing else."""

    name: str = Identifier
    type: FieldType = "str"
    description: str = ""
    choices: tuple[str, ...] = ()
    pattern: str | None = Field(None, description="a regex the whole value matches (str fields): "
                                "the decoder can produce nothing else")

    @model_validator(mode="after")
    def _choices_are_strings(self):
        if self.choices and self.type != "str":
            raise ValueError(f"field {self.name!r}: choices need type str, not {self.type}")
        if self.pattern is not None and (self.type != "str" or self.choices):
            raise ValueError(f"field {self.name!r}: a pattern needs type str without choices")
        check_pattern(self.pattern, f"field {self.name!r}")
        return self


class PromptWeights(Frozen):
    """A node's prompt components: each a named text field the optimizer may rewrite. A field may
    use the node's inputs as Jinja2 variables (``{{ question }}``)."""

    role: str = ""
    task: str = ""
    rules: str = ""
    style: str = ""
    output_instructions: str = ""


class DemoToolCall(Frozen):
    """A tool call inside a demonstration, shown as the turns the node really produces."""

    tool: str
    args: dict[str, Any]
    result: str


class Demonstration(Frozen):
    """A worked example shown to a node: its inputs, the tool calls it made (if any), and the
    outputs it should give."""

    inputs: dict[str, Any]
    outputs: dict[str, Any]
    tool_calls: tuple[DemoToolCall, ...] = ()


class ToolSpec(Frozen):
    """A tool's trainable text: what it does and how to use it. The callable itself, with its
    typed arguments, lives in the tool registry under the same name."""

    name: str = Identifier
    description: str
    usage_notes: str = ""
    patterns: dict[str, str] = Field({}, description="argument name -> a regex the argument's "
                                     "value matches (str arguments), enforced by the decoder")

    @model_validator(mode="after")
    def _valid_patterns(self):
        for arg, pattern in self.patterns.items():
            check_pattern(pattern, f"tool {self.name!r} argument {arg!r}")
        return self
