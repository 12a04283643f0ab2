"""This task's own tool (a user's code): evaluate one arithmetic operation."""

import re


def evaluate(expression: str) -> int:
    """Evaluate one operation of two whole numbers, like 12 - 7 or 3 * 4."""
    match = re.fullmatch(r"\s*(-?\d+)\s*([-+*])\s*(-?\d+)\s*", expression)
    if match is None:
        raise ValueError(f"not one operation of two numbers: {expression!r}")
    a, op, b = int(match.group(1)), match.group(2), int(match.group(3))
    return a - b if op == "-" else a + b if op == "+" else a * b
