"""Every seed a run draws, in one place: the named salts that keep its random streams apart,
and the sampling slot of each model call a node makes.

A run has one seed (``train.seed``; the agent's sampling has its own). Each purpose draws from
its own stream, ``rng(seed, SALT, ...)``, so adding a draw to one never moves another; a node's
calls each have a slot (``Slot``), so a call's seed depends on the node, the step of the run
and which call of that step it is, never on the order calls are made in."""

from __future__ import annotations

import zlib
from enum import IntEnum
from typing import NamedTuple

import numpy as np


class Salt(IntEnum):
    """The streams of a training run (the values are the ones runs have always used, so a run
    is reproduced exactly)."""

    PARENT = 7  # each step's parent from the pool, and its screening minibatch
    EVIDENCE = 11  # the unseen training examples of a second look


def rng(seed: int, salt: Salt, *keys: int) -> np.random.Generator:
    """The generator of one purpose (``salt``) at one place (``keys``: the step, ...)."""
    return np.random.default_rng([seed, int(salt), *keys])


def epoch_order(seed: int, epoch: int, n: int) -> list[int]:
    """The order the training examples are batched in during ``epoch``."""
    return np.random.default_rng([seed, epoch]).permutation(n).tolist()


def demo_seed(seed: int, step: int) -> int:
    """The seed the demonstration sets of ``step`` are drawn with."""
    return seed * 1000 + step


def gate_seed(seed: int, step: int) -> int:
    """The seed of the paired test's sign flips at ``step``."""
    return seed + step


class Slot(NamedTuple):
    """Which model call of a node run this is: ``call`` within the run's ``step`` (a tool step,
    the answer, a retry, a role's turn) and ``sample`` (the extra runs of a vote, a retry, a
    turn of a team). Ask for one by name (``Slot.answer(step)``, ...) and turn it into a seed
    with ``seed_for``."""

    step: int
    call: int
    sample: int = 0

    @classmethod
    def tool_step(cls, step: int, i: int, sample: int = 0) -> "Slot":
        return cls(step, i, sample)

    @classmethod
    def answer(cls, step: int, sample: int = 0) -> "Slot":
        return cls(step, 63, sample)

    @classmethod
    def retry(cls, step: int, retry: int) -> "Slot":
        return cls(step, 62, 100 + retry)

    @classmethod
    def turn(cls, step: int, t: int) -> "Slot":
        return cls(step, t, 200 + t)

    @classmethod
    def controller(cls, step: int, t: int) -> "Slot":
        return cls(step, t, 300 + t)

    def seed_for(self, base: int, node: str) -> int:
        """The call's seed from the agent's base seed and the node's name."""
        key = f"{node}:{self.step * 64 + self.call}" + (f":{self.sample}" if self.sample else "")
        return (base + zlib.crc32(key.encode())) % 2**31
