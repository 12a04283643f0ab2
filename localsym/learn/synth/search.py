"""One search's state: the rows it runs on (the training rows, then the inputs with no
answer), the bank of values and the targets, and the joined and conditional answers found."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from localsym.agent.node import NodeSpec
from localsym.data import Example
from localsym.learn.synth.bank import Bank
from localsym.learn.synth.targets import Targets
from localsym.learn.synth.values import Value


@dataclass
class Search:
    """One search's state: the rows, the bank and the targets."""

    node: NodeSpec
    fit: list[Example]
    extra: list[dict[str, Any]]  # inputs with no answer (held back, unlabeled)
    bank: Bank
    targets: Targets
    texts: dict[str, list[str]]
    joined: dict[str, Value] = field(default_factory=dict)
    conds: dict[str, Value] = field(default_factory=dict)

    @property
    def width(self) -> int:
        return len(self.fit) + len(self.extra)

    def rows(self) -> list[dict[str, Any]]:
        return [ex.inputs for ex in self.fit] + self.extra
