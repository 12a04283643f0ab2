"""The tape of a forward pass: what every executed node saw, had, and did."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from localsym.agent.tools import ToolCallRecord


class Turn(BaseModel):
    """One turn of a node with roles: who spoke, what they saw, what they said and wrote, their
    tool call (a checker), whether they called the node done, and how the controller chose
    them."""

    role: str
    message: str = ""
    outputs: dict[str, Any] = {}
    done: bool = False
    messages: list[dict[str, str]] = []
    tool_call: ToolCallRecord | None = None
    chosen_by: str = "order"


class NodeRecord(BaseModel):
    """One execution of one node."""

    node: str
    inputs: dict[str, Any]
    weights: dict[str, Any] = Field(description="the NodeSpec as it was when the node ran")
    messages: list[dict[str, str]] = Field(description="the prompt as sent (chat messages)")
    outputs: dict[str, Any] = {}
    tool_calls: list[ToolCallRecord] = []
    route: str | None = None
    reasoning: str | None = Field(None, description="the free-text draft written before the "
                                  "outputs (a node with reasoning)")
    samples: list[dict[str, Any]] = Field([], description="the outputs of every run of a node "
                                          "that votes (the record is the majority's run)")
    error: str | None = None
    seconds: float = 0.0
    cached: bool = False
    calls: int = Field(0, description="model calls this node run made")
    tokens: int = Field(0, description="prompt and answer tokens of its model calls")
    turns: list[Turn] = Field([], description="the conversation of a node with roles")

    def count(self, completion) -> None:
        """Account for one model call's answer: its tokens, whether it came from the cache."""
        self.tokens += completion.prompt_tokens + completion.completion_tokens
        self.cached = self.cached or completion.cached


class Trajectory(BaseModel):
    """A forward pass on one example: the records in execution order and the final state."""

    example: dict[str, Any]
    records: list[NodeRecord] = []
    state: dict[str, Any] = Field({}, description="every field known at the end")
    outputs: dict[str, Any] = Field({}, description="the agent's answer (final output fields)")
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def calls(self) -> int:
        """Model calls the run made (what an example costs)."""
        return sum(r.calls for r in self.records)

    @property
    def tokens(self) -> int:
        """Prompt and answer tokens of the run's model calls."""
        return sum(r.tokens for r in self.records)
