"""The program optimizer: the model writes a node's program in the one program form, as a few
steps under an enum of the language's operations and the node's tools (a small schema a model
fills well), each step an operation on earlier steps, inputs or literals; the steps become the
tree (``agent/expr.py``), which is checked kind by kind and run on the batch's examples before it
is offered. It is the text channel beside the synthesis engine: a larger model that sees the
rule in a few rows writes it down, and the data keeps it or not, like any other edit."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from localsym.agent import expr as E
from localsym.agent.functions import FUNCTIONS
from localsym.agent.glue import OP_TYPES
from localsym.agent.node import NodeSpec
from localsym.agent.program import Program, run_program
from localsym.agent.spec import PipelineSpec
from localsym.agent.tools import ToolRegistry
from localsym.learn.edits import AttachTool, SetProgram
from localsym.learn.optim.base import (Batch, LearningRate, Optimizer, Proposal, UpdateRecord,
                                       history)
from localsym.lm.base import LM, META_PARAMS, SamplingParams
from localsym.metrics import exact_match, score
from localsym.templates import render

MAX_STEPS = 8
VALUES = ("input", "text", "number")  # steps that name a value: an input, a literal
# the language's operations as the prompt lists them: name -> what it takes and does
OPERATIONS = {**{n: f"({', '.join(f.takes)}): {f.doc}" for n, f in FUNCTIONS.items()
                 if not f.infix or f.infix in "+-"},
              **{n: "(value, parameters...): " + " ".join((c.__doc__ or "").split())[:90]
                 for n, c in OP_TYPES.items()}}


def draft_model(node: NodeSpec, tools: list[str]) -> type[BaseModel]:
    """The schema of a program draft for ``node``: the output first (an enum), then the steps,
    each an operation (an enum of the language's and ``tools``) and its arguments."""
    ops = tuple(VALUES) + tuple(n for n, f in FUNCTIONS.items() if not f.infix or
                                f.infix in "+-") + tuple(sorted(OP_TYPES)) + tuple(tools)
    step = create_model(f"{node.name}_ProgramStep", op=(Literal[ops], ...),  # type: ignore
                        args=(list[str], Field([], max_length=4)))
    return create_model(f"{node.name}_ProgramDraft",
                        output=(Literal[tuple(f.name for f in node.outputs)], ...),  # type: ignore
                        steps=(list[step], Field(min_length=1, max_length=MAX_STEPS)))


def tree_of(steps: list[Any], node: NodeSpec, tool_args: dict[str, list[str]]) -> E.Expr:
    """The tree the steps write (the last step is the answer); a ValueError names the first
    step that does not make sense."""
    made: list[E.Expr] = []
    for i, st in enumerate(steps):
        args = [_arg(a, made, node) for a in st.args]
        try:
            made.append(_step(st.op, args, st.args, tool_args))
        except (ValueError, IndexError, TypeError) as err:
            raise ValueError(f"step {i} ({st.op}): {err}") from None
    return made[-1]


def _arg(text: str, made: list[E.Expr], node: NodeSpec) -> E.Expr:
    ref = re.fullmatch(r"#(\d+)", text.strip())
    if ref:
        k = int(ref.group(1))
        if k >= len(made):
            raise ValueError(f"#{k} is not an earlier step")
        return made[k]
    if text in node.inputs:
        return E.Input(text)
    return E.Const(int(text) if re.fullmatch(r"-?\d{1,12}", text.strip()) else text)


def _step(op: str, args: list[E.Expr], raw: list[str], tool_args: dict[str, list[str]]
          ) -> E.Expr:
    if op == "input":
        if not args or not isinstance(args[0], E.Input):
            raise ValueError(f"{raw[:1]} is not an input of the node")
        return args[0]
    if op in ("text", "number"):
        value = raw[0] if raw else ""
        return E.Const(int(value) if op == "number" else value)
    if op in tool_args:
        names = tool_args[op]
        if len(args) != len(names):
            raise ValueError(f"the tool takes {len(names)} arguments ({names})")
        return E.Call(op, tuple(zip(names, args)))
    if op in OP_TYPES:
        params = [a.value if isinstance(a, E.Const) else None for a in args[1:]]
        if None in params:
            raise ValueError("a glue operation's parameters are literals")
        fields = [k for k in OP_TYPES[op].model_fields if k not in ("op", "takes", "gives")]
        return E.Glue(OP_TYPES[op](**dict(zip(fields, params))), args[0])
    if op == "concat":
        return E.concat(*args)
    if len(args) != len(FUNCTIONS[op].takes):
        raise ValueError(f"it takes {len(FUNCTIONS[op].takes)} values")
    return E.Apply(op, tuple(args))


class ProgramOptimizer(Optimizer):
    """Asks the model for a program of each node whose answers the batch gives, and offers the
    ones that check and answer one of the batch's examples or more."""

    name = "program"

    def __init__(self, lm: LM, rate: LearningRate = LearningRate(),
                 params: SamplingParams = META_PARAMS, tools: ToolRegistry | None = None):
        self.lm, self.rate, self.params, self.tools = lm, rate, params, tools

    def step(self, spec: PipelineSpec, batch: Batch, memory: list[UpdateRecord]) -> Proposal:
        proposal = Proposal(spec=spec, rate=self.rate)
        rows = [r for r in batch.rows if r.get("expected")][:8]
        for node in spec.nodes:
            if node.roles or not rows or not all(
                    i in r["inputs"] for r in rows for i in node.inputs) or not any(
                    f.name in rows[0]["expected"] for f in node.outputs):
                continue  # a node the examples give the inputs and answers of
            self._draft(proposal, spec, node, rows, memory)
        return proposal

    def _draft(self, proposal: Proposal, spec: PipelineSpec, node: NodeSpec, rows: list[dict],
               memory: list[UpdateRecord]) -> None:
        tools = [t.name for t in spec.tools if self.tools is None or t.name in
                 self.tools.names()]
        tool_args = {t: self._arguments(t) for t in tools}
        prompt = render("optimize_program.j2", task=spec.description, node=node, rows=rows,
                        functions=OPERATIONS, tools=spec.tools, tool_args=tool_args,
                        history=history(memory, self.name, node.name))
        draft = self.lm.generate([{"role": "user", "content": prompt}],
                                 draft_model(node, tools), self.params)
        try:
            tree = tree_of(draft.steps, node, tool_args)
            program = Program(outputs={draft.output: tree})
            program.check(dict.fromkeys(node.inputs), tuple(tools), {f.name for f in node.outputs})
        except ValueError as err:
            proposal.rejected.append(f"{node.name}: a program that does not check: {err}")
            return
        right = sum(self._right(node, program, r) for r in rows)
        if not right:
            proposal.rejected.append(f"{node.name}: program {program.describe()[:200]} answers "
                                     "none of the batch's examples")
            return
        for t in program.tools():
            if t not in node.tools:
                proposal.add(AttachTool(node=node.name, tool=t))
        proposal.add(SetProgram(node=node.name, program=program))

    def _arguments(self, tool: str) -> list[str]:
        if self.tools is None:
            return []
        fields = self.tools.get(tool).args_model.model_fields
        return [a for a, f in fields.items() if f.is_required()]

    def _right(self, node: NodeSpec, program: Program, row: dict) -> bool:
        outputs, _, failed = run_program(program, node.outputs, row["inputs"],
                                         self.tools or ToolRegistry())
        wanted = {k: v for k, v in row["expected"].items() if k in program.outputs}
        return failed is None and score(exact_match, outputs, wanted).score >= 1.0
