"""The bounds of the synthesis engine, in one place (a run's config: ``train.synthesis``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SynthLimits(BaseModel):
    """How much the search for a program may spend in one step. Every bound is a hard stop:
    what is found by then is what is offered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    examples: int = Field(32, ge=2, le=512, description="training examples searched on")
    held_out: float = Field(0.25, ge=0.0, le=0.5, description="share of them held back to "
                            "check the ranking for over-fitting")
    depth: int = Field(3, ge=1, le=6, description="glue operations on one value")
    values: int = Field(12000, ge=10, le=100_000, description="distinct values kept per search")
    width: int = Field(32, ge=1, le=200, description="values tried per tool argument")
    assignments: int = Field(800, ge=1, le=100_000, description="argument assignments tried "
                             "per tool and round")
    tool_calls: int = Field(20000, ge=0, le=1_000_000, description="distinct tool calls per step")
    seconds: float = Field(30.0, gt=0.0, le=3600.0, description="wall seconds per step")
    steps: int = Field(2, ge=1, le=3, description="tools in sequence in one program")
    keep: int = Field(3, ge=1, le=16, description="programs offered as candidates per step")
    probe: int = Field(4, ge=1, le=32, description="examples an assignment is tried on first; "
                       "one that raises or returns nothing on all of them is dropped")
