"""The event log's records, typed: what a training run writes to ``events.jsonl`` and what the
summary, the report and a deployment's rounds read back, one pydantic model per kind of event.
They are written and read only through ``RunDirectory`` (learn/checkpoint.py).

Fields a reader needs to place a record (``event``, a step's ``step`` and ``decision``) are
required; the rest have defaults, so a log written by an earlier version still reads. A record
that is not an event (torn, hand-edited) is left out by the reader, never guessed at."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from localsym.learn.backward import ExampleGradients
from localsym.learn.edits import LoggedEdit
from localsym.learn.loss import LossRecord
from localsym.learn.optim import OptimizerName

Decision = Literal["accepted", "rolled back", "no change"]  # a step's
# a candidate's: not yet judged, stopped at screening, refused by the gate, accepted
CandidateDecision = Literal["proposed", "screened out", "rejected", "accepted"]


class Evidence(BaseModel):
    """The further examples a promising gain was scored on, and what they said."""

    examples: list[str]
    candidate: float
    parent: float
    p: float | None = None  # the paired test over validation and these examples together


class CandidateRecord(BaseModel):
    """One candidate of a step as the log keeps it: where it came from, its edits, its scores
    and what the search decided (``search.Candidate`` adds the spec)."""

    source: OptimizerName  # the LLM optimizer or code-listed source that proposed it
    edits: list[LoggedEdit]  # typed (a log of an earlier version: its lines, as they were)
    note: str = ""  # how it was found, for the reader (e.g. the glue search's score)
    minibatch: float | None = None  # mean score on the screening minibatch
    val: float | None = None  # mean validation score, if it got that far
    dense: float | None = None  # dense tie-break score, if computed
    calls: float | None = None  # model calls per validation example
    tokens: float | None = None  # their prompt and answer tokens per validation example
    seconds: float | None = None  # wall seconds per validation example (a cached call is ~0)
    evidence: Evidence | None = None  # the second look of a promising gain, if it got one
    decision: CandidateDecision = "proposed"
    reason: str = ""


class ConversationTurn(BaseModel):
    """One turn of a node with roles, as the log keeps it."""

    role: str
    message: str = ""
    outputs: dict = {}
    done: bool = False
    chosen_by: str = ""


class Conversation(BaseModel):
    """The conversation inside a node with roles, on one example of a step's batch."""

    example_id: str
    node: str
    turns: list[ConversationTurn]


def conversations_of(scored: list) -> list[Conversation]:
    """The conversations of the nodes with roles in a step's scored examples."""
    return [Conversation(example_id=s.example.id, node=r.node, turns=[
        ConversationTurn(**t.model_dump(include={"role", "message", "outputs", "done",
                                                 "chosen_by"})) for t in r.turns])
        for s in scored for r in s.trajectory.records if r.turns]


class _Event(BaseModel):
    model_config = ConfigDict(extra="allow")  # a newer writer's fields survive a rewrite

    time: float = 0.0


class StartEvent(_Event):
    """The run started: the untrained agent's validation score."""

    event: Literal["start"] = "start"
    step: int = 0
    val_score: float


class StepEvent(_Event):
    """One training step, every phase of it."""

    event: Literal["step"] = "step"
    step: int
    decision: Decision
    epoch: int = 0
    batch: list[str] = []
    parent: int = 0  # the pool entry the step started from
    losses: list[LossRecord] = []
    gradients: list[ExampleGradients] = []
    failures: list[str] = []  # calls that failed, each costing its example only
    conversations: list[Conversation] = []  # inside the batch's nodes with roles
    minibatch: list[str] = []  # the screening minibatch's example ids
    parent_minibatch: float | None = None
    candidates: list[CandidateRecord] = []
    changes: list[str] = []  # the accepted edits
    rejected_edits: list[str] = []
    val_before: float | None = None
    val_after: float | None = None
    reason: str = ""
    proposed_spec: dict | None = None  # the accepted candidate, or the best one rolled back
    seconds: float | None = None
    llm_calls: dict[str, int] = {}
    synthesis: dict | None = None  # what the search for programs looked at (SynthStats)


class StoppedEvent(_Event):
    """The run stopped before its last step: its budget was spent (between steps, or inside
    the step after ``step``, which a resume runs again), or nothing was being learned
    (``patience``: training is over, a resume has nothing to do)."""

    event: Literal["stopped"] = "stopped"
    step: int
    reason: str
    spent: dict[str, float] = {}
    kind: Literal["budget", "patience"] = "budget"


Event = Annotated[Union[StartEvent, StepEvent, StoppedEvent], Field(discriminator="event")]
_EVENT = TypeAdapter(Event)


def parse_event(record: dict) -> StartEvent | StepEvent | StoppedEvent | None:
    """``record`` as its event, or None where it is not one."""
    try:
        return _EVENT.validate_python(record)
    except ValidationError:
        return None
