"""The bounds and the tuning numbers of the synthesis engine, in one place (a run's config:
``train.synthesis``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict

# a count: a whole number written as one (``true`` is not 1)
Whole = Annotated[int, Strict()]


class SynthLimits(BaseModel):
    """How much the search for a program may spend in one step. Every bound but ``seconds`` is
    a count, so the same task gives the same program in any process and under any load; what
    is found when a bound is reached is what is offered, and the bound is reported. ``seconds``
    is a safety cap that says when it fired."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    examples: Whole = Field(32, ge=1, le=512, description="training examples searched on")
    held_out: float = Field(0.25, ge=0.0, le=0.5, description="share of them held back to "
                            "check the ranking for over-fitting (with 8 examples or more)")
    unlabeled: Whole = Field(8, ge=0, le=64, description="inputs with no answer (validation "
                           "inputs) every value is also computed on: a program that fails "
                           "on them ranks below one that does not")
    depth: Whole = Field(3, ge=1, le=6, description="glue operations in a row on one value")
    level: Whole = Field(16, ge=2, le=40, description="the largest program size enumerated")
    values: Whole = Field(60_000, ge=10, le=1_000_000, description="distinct values kept per "
                        "search")
    cells: Whole = Field(1_500_000, ge=1000, le=50_000_000, description="values times rows kept "
                       "per search (bounds memory where rows are many)")
    memory: Whole = Field(192, ge=1, le=65536, description="MiB the kept values may take, "
                          "estimated from their entries (long texts and lists over many rows "
                          "reach it before the count of values)")
    tried: Whole = Field(1_500_000, ge=100, le=100_000_000, description="values computed per "
                       "search (kept or not)")
    pieces: Whole = Field(6, ge=1, le=12, description="parts of a text joined (concatenation)")
    branches: Whole = Field(3, ge=1, le=6, description="branches of a conditional")
    width: Whole = Field(32, ge=1, le=200, description="values tried per tool argument")
    assignments: Whole = Field(800, ge=1, le=100_000, description="argument assignments tried "
                             "per tool and round")
    tool_calls: Whole = Field(20000, ge=0, le=1_000_000, description="distinct tool calls per step")
    seconds: float = Field(30.0, gt=0.0, le=3600.0, description="safety cap: wall seconds "
                           "per step (reported when it fires)")
    steps: Whole = Field(2, ge=1, le=3, description="tools in sequence in one program")
    keep: Whole = Field(3, ge=1, le=16, description="programs offered as candidates per step")
    probe: Whole = Field(4, ge=1, le=32, description="examples an assignment is tried on first; "
                       "one that raises or returns nothing on all of them is dropped")
