"""Typed edits of a spec and the rules every edit obeys: the learning rate on a prompt text
(``check_text_edit``), and the workflow's actions (the paper's add, remove and edit of nodes and
edges) that the PipelineOptimizer's LLM may propose and the structural search lists, applied by
``apply_action``. An edit whose result is not a valid pipeline is refused with its reason."""

from __future__ import annotations

import difflib
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from localsym.agent.node import NodeSpec, RoleSpec
from localsym.agent.spec import PipelineSpec
from localsym.agent.weights import FieldType, PROMPT_FIELDS, PromptWeights
from localsym.errors import ConfigError
from localsym.templates import variables_of

MAX_TEXT = 2000  # characters in one prompt field or tool text
MIN_EDIT = 200  # characters one edit may always change, however short the text (a "learning rate")


def check_text_edit(old: str, new: str, max_change: float, allowed_vars: set[str]) -> str | None:
    """Why an edit of a prompt text is not allowed, or None. Enforces the learning rate: an edit
    may change at most ``max_change`` of the old text's characters (and always MIN_EDIT)."""
    if len(new) > MAX_TEXT:
        return f"new text is {len(new)} characters (limit {MAX_TEXT})"
    dropped = variables_of(old) - variables_of(new)
    if dropped:
        return f"drops the input variable(s) {sorted(dropped)}"
    unknown = variables_of(new) - allowed_vars
    if unknown:
        return f"uses unknown variable(s) {sorted(unknown)}"
    edited = sum(max(i2 - i1, j2 - j1) for op, i1, i2, j1, j2 in
                 difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
                 if op != "equal")
    allowed = max(int(max_change * len(old)), MIN_EDIT)
    if edited > allowed:
        return (f"edits {edited} characters (the learning rate allows {allowed}: "
                f"{max_change:.0%} of the text, at least {MIN_EDIT})")
    return None


class NewField(BaseModel):
    name: str = Field(pattern=r"^[a-z_][a-z0-9_]{0,30}$")
    type: FieldType = "str"
    description: str = ""


class AddNode(BaseModel):
    action: Literal["add_node"]
    name: str = Field(pattern=r"^[a-z_][a-z0-9_]{0,30}$")
    after: str
    task: str
    inputs: list[str] = Field(max_length=6)
    outputs: list[NewField] = Field(min_length=1, max_length=4)


class RemoveNode(BaseModel):
    action: Literal["remove_node"]
    name: str


class EditNode(BaseModel):
    action: Literal["edit_node"]
    name: str
    field: Literal[PROMPT_FIELDS]
    new_text: str


class Rewire(BaseModel):
    action: Literal["rewire"]
    source: str
    target: str
    connect: bool = Field(description="true adds the connection, false removes it")


class AddRole(BaseModel):
    """Give a node with roles one more role, with the prompt the optimizer writes."""

    action: Literal["add_role"]
    node: str
    name: str = Field(pattern=r"^[a-z_][a-z0-9_]{0,30}$")
    description: str = Field(max_length=200)
    task: str = Field(max_length=600)
    writes: list[str] = Field([], max_length=4)


class RemoveRole(BaseModel):
    action: Literal["remove_role"]
    node: str
    name: str


class EditController(BaseModel):
    """Change who speaks next in a node with roles, or its turn limit."""

    action: Literal["edit_controller"]
    node: str
    policy: Literal["order", "rule", "random", "model"]
    max_turns: int = Field(ge=1, le=32)


ROLE_ACTIONS = (AddRole, RemoveRole, EditController)


def _team_action(spec: PipelineSpec, action: BaseModel) -> PipelineSpec:
    """A role action on one node: the other roles and nodes keep their weights."""
    try:
        node = spec.node(action.node)
    except KeyError:
        raise ConfigError(f"{action.action} on unknown node {action.node!r}", "") from None
    if not node.roles:
        raise ConfigError(f"{action.action}: node {node.name!r} has no roles", "")
    if isinstance(action, AddRole):
        role = RoleSpec(name=action.name, description=action.description,
                        prompt=PromptWeights(task=action.task), writes=tuple(action.writes))
        new = node.model_copy(update={"roles": node.roles + (role,)})
    elif isinstance(action, RemoveRole):
        new = node.model_copy(update={"roles": tuple(r for r in node.roles
                                                     if r.name != action.name)})
        if new.roles == node.roles:
            raise ConfigError(f"remove_role of unknown role {action.name!r}", "")
    else:
        new = node.model_copy(update={"controller": node.team.model_copy(
            update={"policy": action.policy, "max_turns": action.max_turns})})
    return spec.replace(NodeSpec.model_validate(new.model_dump()))


def apply_action(spec: PipelineSpec, action: BaseModel) -> PipelineSpec:
    """Apply one typed edit; raises ConfigError (with the reason) if the result is not a valid
    pipeline. Other nodes keep their weights untouched."""
    if isinstance(action, ROLE_ACTIONS):
        try:
            return _team_action(spec, action)
        except ValidationError as err:
            raise ConfigError(f"{action.action}: {err.errors()[0]['msg']}", "") from None
    data = spec.model_dump(mode="json")
    names = [n.name for n in spec.nodes]
    edges = [e.model_dump() for e in spec.effective_edges()]
    explicit = bool(spec.edges)
    if isinstance(action, AddNode):
        _add_node(data, names, edges if explicit else None, action)
    elif isinstance(action, RemoveNode):
        _remove_node(data, names, edges if explicit else None, action)
        if spec.start == action.name:
            data["start"] = None
    elif isinstance(action, EditNode):
        if action.name not in names:
            raise ConfigError(f"edit_node of unknown node {action.name!r}", "")
        node = spec.node(action.name)
        why = check_text_edit(getattr(node.prompt, action.field), action.new_text.strip(), 1.0,
                              set(node.inputs))
        if why:
            raise ConfigError(f"edit_node {action.name}.{action.field}: {why}", "")
        data["nodes"][names.index(action.name)]["prompt"][action.field] = action.new_text.strip()
    elif isinstance(action, Rewire):
        pair = {"source": action.source, "target": action.target, "when": ""}
        present = any(e["source"] == action.source and e["target"] == action.target for e in edges)
        if action.connect and present or not action.connect and not present:
            raise ConfigError(f"rewire {action.source} -> {action.target}: nothing to change", "")
        edges = edges + [pair] if action.connect else [
            e for e in edges if not (e["source"] == action.source and e["target"] == action.target)]
        data["edges"] = edges
    return PipelineSpec.from_data(data, source=f"{action.action} result")


def _add_node(data: dict, names: list[str], edges: list[dict] | None, action: AddNode) -> None:
    """``data`` (a spec's) with the new node after ``action.after``; explicit ``edges`` are
    rerouted through it (None: the nodes run in order)."""
    if action.after not in names:
        raise ConfigError(f"add_node after unknown node {action.after!r}", "")
    added = {"name": action.name, "prompt": {"task": action.task},
             "inputs": list(action.inputs), "outputs": [f.model_dump() for f in action.outputs]}
    data["nodes"].insert(names.index(action.after) + 1, added)  # validated with the whole spec
    if edges is not None:
        outgoing = [e for e in edges if e["source"] == action.after]
        edges = [e for e in edges if e["source"] != action.after]
        edges.append({"source": action.after, "target": action.name, "when": ""})
        edges += [{**e, "source": action.name} for e in outgoing]
        data["edges"] = edges


def _remove_node(data: dict, names: list[str], edges: list[dict] | None,
                 action: RemoveNode) -> None:
    """``data`` without the node; explicit ``edges`` are joined around it."""
    if action.name not in names:
        raise ConfigError(f"remove_node of unknown node {action.name!r}", "")
    if len(names) == 1:
        raise ConfigError("cannot remove the only node", "")
    data["nodes"] = [n for n in data["nodes"] if n["name"] != action.name]
    if edges is not None:
        ins = [e["source"] for e in edges if e["target"] == action.name]
        outs = [e["target"] for e in edges if e["source"] == action.name]
        edges = [e for e in edges if action.name not in (e["source"], e["target"])]
        edges += [{"source": a, "target": b, "when": ""} for a in ins for b in outs]
        data["edges"] = edges


def describe_action(action: BaseModel) -> str:
    if isinstance(action, AddRole):
        return f"add role {action.name} to {action.node}"
    if isinstance(action, RemoveRole):
        return f"remove role {action.name} from {action.node}"
    if isinstance(action, EditController):
        return f"{action.node}: controller {action.policy}, up to {action.max_turns} turns"
    if isinstance(action, AddNode):
        return f"add node {action.name} after {action.after}"
    if isinstance(action, RemoveNode):
        return f"remove node {action.name}"
    if isinstance(action, EditNode):
        return f"edit {action.name}.{action.field}"
    return f"{'connect' if action.connect else 'disconnect'} {action.source} -> {action.target}"
