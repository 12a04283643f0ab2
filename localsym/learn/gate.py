"""The gate: when a candidate's validation scores are evidence enough to replace its parent.

A strict mean gain (above ``min_gain``) that, on a split large enough, also passes a one-sided
paired sign-flip test; or an equal score with no example lost and a tie-break that never buys
cost (fewer model calls per example; or as many and a likelier gold answer). Every comparison
of scores goes through ``TOL``, the one tolerance of the search."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from localsym.seeds import gate_seed

if TYPE_CHECKING:
    from localsym.learn.state import TrainConfig

TOL = 1e-12  # scores closer than this are equal (means, gains, per-example scores)
COST_TOL = 1e-9  # model calls (or dense scores) per example closer than this are equal


class Verdict(NamedTuple):
    """The gate's answer: accepted or not, why, and whether the gain is there but not yet
    significant (more evidence may decide: ``promising``)."""

    accepted: bool
    reason: str
    promising: bool = False
    p: float | None = None  # the paired test's p-value, where it ran


def gate(new: list[float], old: list[float], min_gain: float = 0.0,
         dense_new: float | None = None, dense_old: float | None = None,
         alpha: float | None = None, seed: int = 0, calls_new: float | None = None,
         calls_old: float | None = None, tokens_new: float | None = None,
         tokens_old: float | None = None) -> Verdict:
    """Accept only on evidence: a mean gain above ``min_gain`` (strict), or the same per-example
    scores or better everywhere with an equal mean and a tie-break that never buys cost (no
    more model calls and no more tokens per example; then fewer of either, or as many and a
    higher dense score); with ``alpha``, a gain must also pass the paired sign-flip test at
    that level (a few examples of gain on a small validation split are noise)."""
    gain = float(np.mean(new) - np.mean(old))
    if gain > min_gain + TOL:
        why = f"validation gain {gain:+.3f}"
        if alpha is None:
            return Verdict(True, why)
        p = permutation_p_value(new, old, seed=seed)
        if p >= alpha:
            return Verdict(False, f"{why}, but no significant gain (paired test {p_text(p)} >= "
                                  f"{alpha:g})", promising=True, p=p)
        return Verdict(True, f"{why}, {p_text(p)}", p=p)
    costs = [("model calls", calls_new, calls_old), ("tokens", tokens_new, tokens_old)]
    return Verdict(*tie(new, old, gain, min_gain, dense_new, dense_old,
                        [(k, a, b) for k, a, b in costs if a is not None and b is not None]))


def p_text(p: float) -> str:
    """A p-value as a reader should see it (a sign-flip test's smallest values are not 0)."""
    return "p < 0.001" if p < 0.001 else f"p={p:.3f}"


def is_tie(new: list[float], old: list[float]) -> bool:
    """An equal mean with no example lost: where the tie-break decides."""
    return abs(float(np.mean(new) - np.mean(old))) <= TOL and \
        all(a >= b - TOL for a, b in zip(new, old))


def tie(new: list[float], old: list[float], gain: float, min_gain: float,
        dense_new: float | None, dense_old: float | None,
        costs: list[tuple[str, float, float]]) -> tuple[bool, str]:
    """The rule for no strict gain: a tie never buys cost (``costs``: what, new, old per
    example: model calls, tokens), then a cheaper one or a likelier gold answer wins."""
    lost = int(sum(a < b - TOL for a, b in zip(new, old)))
    if abs(gain) <= TOL and not lost:
        more = [(k, a, b) for k, a, b in costs if a > b + COST_TOL]
        if more:
            k, a, b = more[0]
            return False, f"validation equal, but more {k} per example ({b:.2f} -> {a:.2f}): " \
                          "a tie never buys cost"
        less = [(k, a, b) for k, a, b in costs if a < b - COST_TOL]
        if less:
            k, a, b = less[0]
            return True, f"validation equal, no example lost, fewer {k} per example " \
                         f"({b:.2f} -> {a:.2f})"
        if dense_new is not None and dense_old is not None and dense_new > dense_old + COST_TOL:
            return True, f"validation equal, no example lost, dense score {dense_old:.3f} -> " \
                         f"{dense_new:.3f}"
    if gain < -TOL:
        return False, f"validation dropped by {-gain:.3f}"
    if min_gain >= gain > TOL:
        return False, f"gain {gain:+.3f} not above min_gain {min_gain}"
    return False, "no gain on validation" + (f" ({lost} example(s) lost)" if lost else "")


def permutation_p_value(new: list[float], old: list[float], seed: int = 0,
                        rounds: int = 4000) -> float:
    """One-sided paired sign-flip test: the chance of a mean improvement at least this large if
    the update changed nothing."""
    d = np.asarray(new) - np.asarray(old)
    if not d.any():
        return 1.0
    flips = np.random.default_rng(seed).choice([-1.0, 1.0], size=(rounds, d.size))
    return float(((flips * d).mean(axis=1) >= d.mean()).mean())


class Gate:
    """The gate at a run's settings (``TrainConfig``: min_gain, the paired test and its alpha
    over the looks, the seed)."""

    def __init__(self, config: "TrainConfig"):
        self.config = config

    def __call__(self, new: list[float], old: list[float], step: int,
                 dense_new: float | None = None, dense_old: float | None = None,
                 calls_new: float | None = None, calls_old: float | None = None,
                 n_val: int | None = None, tokens_new: float | None = None,
                 tokens_old: float | None = None) -> Verdict:
        """``n_val``: the validation examples among ``new`` (they decide whether the paired
        test applies)."""
        cfg = self.config
        return gate(new, old, cfg.min_gain, dense_new, dense_old,
                    cfg.paired_alpha(n_val or len(new)), gate_seed(cfg.seed, step), calls_new,
                    calls_old, tokens_new, tokens_old)
