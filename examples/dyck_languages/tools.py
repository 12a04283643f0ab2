"""This task's own tool (a user's code): the brackets that close a sequence."""

PAIRS = {"(": ")", "[": "]", "{": "}", "<": ">"}


def close_brackets(sequence: str) -> str:
    """The closing brackets that complete a sequence of brackets, innermost first."""
    stack = []
    for c in sequence:
        if c in PAIRS:
            stack.append(PAIRS[c])
        elif c in PAIRS.values():
            if not stack or stack.pop() != c:
                raise ValueError(f"unbalanced at {c!r}")
    return "".join(reversed(stack))
