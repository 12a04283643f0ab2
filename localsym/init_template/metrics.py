"""Your metric: localsym calls it with the agent's outputs and the expected outputs (dicts) and
wants a score in [0, 1]. Return a number, or MetricResult(score, feedback): the feedback is shown
to the optimizers. If it raises, that example scores 0 and the run goes on."""

from localsym import MetricResult


def partial_credit(outputs: dict, expected: dict) -> MetricResult:
    got = str(outputs.get("sorted", "")).split()
    want = str(expected["sorted"]).split()
    right = sum(a == b for a, b in zip(got, want))
    score = right / max(len(want), len(got), 1)
    feedback = "correct" if score == 1.0 else f"{right} of {len(want)} words in place; " \
        f"expected {' '.join(want)!r}, got {' '.join(got)!r}"
    return MetricResult(score, feedback)
