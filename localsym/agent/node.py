"""A layer of the network as data: its prompt, demonstrations, inputs and typed outputs, the
tools it may use with the bindings that carry glue, its test-time compute (a reasoning draft, a
vote, a check) and its roles under a controller. Validated as a whole; the graph it sits in is
``PipelineSpec`` (``agent/spec.py``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, model_validator

from localsym.agent import expr as E
from localsym.agent.chain import Chain, check_chain
from localsym.agent.program import Program
from localsym.agent.weights import Demonstration, FieldSpec, Frozen, Identifier, PromptWeights


class InputBinding(Frozen):
    """A tool argument filled from one of the node's inputs, reshaped by the glue ``via`` (e.g.
    the text after ``List:``). Written as the input's bare name when there is no glue."""

    input: str
    via: Chain = ()


class ToolBinding(Frozen):
    """An output taken from a tool's result, reshaped by the glue ``via`` (e.g. its first
    number). Written as the tool's bare name when there is no glue."""

    tool: str
    via: Chain = ()

    @model_validator(mode="after")
    def _from_text(self):
        check_chain(self.via, "text")  # a tool's result is a text
        return self


FIELD_KINDS = {"str": "text", "bool": "text", "int": "number", "float": "number",
               "list[str]": "list"}

def _bare_or_glued(value: Any) -> str:
    return "bare" if isinstance(value, str) else "glued"


# A binding's value: a bare name, or a name with glue (errors come from the form written)
ArgSource = Annotated[Union[Annotated[str, Tag("bare")], Annotated[InputBinding, Tag("glued")]],
                      Discriminator(_bare_or_glued)]
BoundTool = Annotated[Union[Annotated[str, Tag("bare")], Annotated[ToolBinding, Tag("glued")]],
                      Discriminator(_bare_or_glued)]


class Vote(Frozen):
    """Self-consistency: the node runs ``samples`` times (the first as it always does, the others
    sampled at ``temperature`` with seeds of their own) and gives the outputs most runs gave
    (a tie: the earliest)."""

    samples: int = Field(3, ge=2, le=16)
    temperature: float = Field(0.7, gt=0.0, le=2.0)


class Check(Frozen):
    """Check-and-retry: after the node answers, the declared ``tool`` is called with ``args``
    (tool argument -> one of the node's inputs or outputs); a result that is not true (or a
    call that fails) is shown to the model, which answers again, up to ``retries`` times."""

    tool: str
    args: dict[str, str] = Field(min_length=1)
    retries: int = Field(1, ge=1, le=4)


REASONING_FIELD = "reasoning"  # the free-text draft a node with ``reasoning`` writes first


class RoleSpec(Frozen):
    """One of a node's roles (the seed's agents inside an SOP state): its own prompt pieces and
    the node outputs it may write, taking turns in the node's conversation; or, with ``tool``, a
    checker that runs a declared tool on the draft (arguments from the node's inputs and the
    outputs written so far) and hands its verdict back, with no model call."""

    name: str = Identifier
    description: str = ""
    prompt: PromptWeights = PromptWeights()
    writes: tuple[str, ...] = Field((), description="the node outputs this role may write")
    tool: str | None = Field(None, description="a checker: the declared tool it runs")
    args: dict[str, str] = Field({}, description="a checker's tool argument -> one of the "
                                 "node's inputs or outputs")


class Controller(Frozen):
    """Who speaks next in a node with roles, and when the node is done: in ``order``, by
    ``rule`` (``next``: role -> the role after it), at ``random`` (seeded per example and turn),
    or chosen by the ``model`` under an enum schema and ``prompt``. The node is done when the
    ``finisher`` (default: the last role) says so, or after ``max_turns`` turns (a weight); its
    outputs are the last written (by ``outputs_from``, if named)."""

    policy: Literal["order", "rule", "random", "model"] = "order"
    next: dict[str, str] = {}
    prompt: str = ""
    max_turns: int = Field(4, ge=1, le=32)
    finisher: str | None = None
    outputs_from: str | None = None


class NodeSpec(Frozen):
    """A layer of the network."""

    name: str = Identifier
    prompt: PromptWeights = PromptWeights()
    demonstrations: tuple[Demonstration, ...] = ()
    inputs: tuple[str, ...] = ()
    outputs: tuple[FieldSpec, ...] = Field(min_length=1)
    tools: tuple[str, ...] = ()
    tool_choice: Literal["auto", "required"] = Field(
        "auto", description="required: the first step must call a tool")
    max_tool_steps: int = Field(4, ge=1, le=32)
    bind: dict[str, BoundTool] = Field(
        {}, description="output name -> tool name (or {tool, via: glue}): the output is the "
        "result of the node's last call of that tool, reshaped by the glue (deterministic, not "
        "written by the model); when every output is bound the node finishes right after the call")
    arg_from: dict[str, ArgSource] = Field(
        {}, description="'tool.argument' -> one of the node's inputs (or {input, via: glue}): "
        "the node's first step is that tool called with those inputs, reshaped by the glue, as "
        "its arguments (written by the spec, not the model); one tool")
    reasoning: int = Field(0, ge=0, le=4000, description="characters of free-text reasoning the "
                           "node writes before its outputs (a draft, then the answer under the "
                           "schema); 0: none")
    vote: Vote | None = Field(None, description="self-consistency: several runs, the majority's "
                              "outputs")
    check: Check | None = Field(None, description="check the outputs with a declared tool and "
                                "answer again when the check fails")
    roles: tuple[RoleSpec, ...] = Field((), description="several roles taking turns in a "
                                        "conversation inside the node (none: one call)")
    controller: Controller | None = Field(None, description="who speaks next among the roles, "
                                          "and when the node is done (default: in order)")
    program: Program | None = Field(None, description="outputs computed from the inputs by the "
                                    "node's tools and glue, with no model call (where it fails "
                                    "on an example, the node runs as if it had none)")

    @model_validator(mode="after")
    def _unique_outputs(self):
        names = [f.name for f in self.outputs]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"node {self.name!r} has duplicate outputs {sorted(dup)}")
        if self.reasoning and REASONING_FIELD in names:
            raise ValueError(f"node {self.name!r} has an output named {REASONING_FIELD!r}, which "
                             "its reasoning draft would shadow; rename the output or set "
                             "reasoning: 0")
        for out in self.bind:
            tool = self.bound_tool(out)
            if out not in names:
                raise ValueError(f"node {self.name!r} binds {out!r}, which is not one of its "
                                 f"outputs {names}")
            if tool not in self.tools:
                raise ValueError(f"node {self.name!r} binds {out!r} to tool {tool!r}, which the "
                                 f"node does not use (its tools: {list(self.tools)})")
        wired = {key.partition(".")[0] for key in self.arg_from}
        for key, (source, _) in self.wiring().items():
            tool, dot, arg = key.partition(".")
            if not dot or not arg or tool not in self.tools:
                raise ValueError(f"node {self.name!r} arg_from key {key!r} is not 'tool.argument' "
                                 f"of one of its tools {list(self.tools)}")
            if source not in self.inputs:
                raise ValueError(f"node {self.name!r} fills {key!r} from {source!r}, which is not "
                                 f"one of its inputs {list(self.inputs)}")
        if len(wired) > 1:
            raise ValueError(f"node {self.name!r} arg_from names several tools {sorted(wired)}: "
                             "its first step is one call")
        if self.program is not None:
            try:
                self.program.check(dict.fromkeys(self.inputs), self.tools, set(names))
            except ValueError as err:
                raise ValueError(f"node {self.name!r}: {err}") from None
        if self.roles:
            self._valid_roles(names)
        if self.check is not None:
            known = set(self.inputs) | set(names)
            wrong = sorted(v for v in self.check.args.values() if v not in known)
            if wrong:
                raise ValueError(f"node {self.name!r} checks with {self.check.tool!r} reading "
                                 f"{wrong}, which are not its inputs or outputs {sorted(known)}")
        return self

    def _valid_roles(self, names: list[str]) -> None:
        roles = [r.name for r in self.roles]
        twice = sorted({r for r in roles if roles.count(r) > 1})
        if twice:
            raise ValueError(f"node {self.name!r} has duplicate roles {twice}")
        if self.tools or self.bind or self.arg_from or self.vote or self.check or \
                self.reasoning or self.program:
            raise ValueError(f"node {self.name!r} has roles and tools, bindings, a program, a "
                             "vote, a check or a reasoning draft: give those to its roles (a "
                             "checker role runs a tool), or drop the roles")
        known = set(self.inputs) | set(names)
        for r in self.roles:
            if set(r.writes) - set(names):
                raise ValueError(f"role {r.name!r} of node {self.name!r} writes "
                                 f"{sorted(set(r.writes) - set(names))}, not outputs of the node")
            if r.tool is None and r.args:
                raise ValueError(f"role {r.name!r} has tool arguments but no tool")
            if r.tool is not None and (r.writes or not r.args or
                                       set(r.args.values()) - known):
                raise ValueError(f"checker role {r.name!r} of node {self.name!r} needs args "
                                 f"from {sorted(known)} and writes nothing")
        unwritten = sorted(set(names) - {w for r in self.roles for w in r.writes})
        if unwritten:
            raise ValueError(f"no role of node {self.name!r} writes {unwritten}; give those "
                             "outputs to a role (writes: [...])")
        ctrl = self.controller or Controller()
        named = [v for v in (ctrl.finisher, ctrl.outputs_from) if v is not None] + \
            list(ctrl.next) + list(ctrl.next.values())
        if set(named) - set(roles):
            unknown = sorted(set(named) - set(roles))
            raise ValueError(f"node {self.name!r}'s controller names {unknown}, "
                             f"which are not its roles {roles}")

    @property
    def team(self) -> "Controller":
        """The node's controller (the default one where the spec names none)."""
        return self.controller or Controller()

    def bound_tool(self, output: str) -> str | None:
        """The tool whose result ``output`` is bound to, or None."""
        binding = self.bind.get(output)
        return binding if isinstance(binding, str) or binding is None else binding.tool

    def bound_via(self, output: str) -> tuple:
        """The glue between the bound tool's result and ``output`` (``()``: none)."""
        binding = self.bind.get(output)
        return () if isinstance(binding, str) or binding is None else binding.via

    def wiring(self) -> dict[str, tuple[str, tuple]]:
        """The written first call's arguments: ``'tool.argument' -> (input, glue)``."""
        return {key: (b, ()) if isinstance(b, str) else (b.input, b.via)
                for key, b in self.arg_from.items()}

    def written_call(self) -> E.Call | None:
        """The first call the spec writes (``arg_from``) as a program value, or None."""
        if self.call_tool is None:
            return None
        return E.Call(self.call_tool, tuple((key.partition(".")[2], E.via(E.Input(source), via))
                                            for key, (source, via) in self.wiring().items()))

    def bound_values(self) -> dict[str, E.Expr]:
        """The outputs read from the model's own tool calls, as program values: each ``bind``
        (``called(tool) | glue``) and each program output that reads a call."""
        out = {o: E.via(E.Called(self.bound_tool(o)), self.bound_via(o))  # type: ignore[arg-type]
               for o in self.bind}
        if self.program is not None:
            out.update({o: e for o, e in self.program.outputs.items() if E.uses_model(e)})
        return out

    @property
    def call_tool(self) -> str | None:
        """The tool of the first call the spec writes (``arg_from``), or None."""
        return next(iter(self.arg_from)).partition(".")[0] if self.arg_from else None
