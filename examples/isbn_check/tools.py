"""This task's own tool (a user's code): whether an ISBN-10's check digit is right."""


def isbn_valid(isbn: str) -> bool:
    """Whether ``isbn`` (ten characters, hyphens allowed, X for ten last) is a valid ISBN-10."""
    chars = isbn.replace("-", "").strip().upper()
    if len(chars) != 10 or not chars[:9].isdigit() or not (chars[9].isdigit() or chars[9] == "X"):
        raise ValueError(f"not an ISBN-10: {isbn!r}")
    digits = [int(c) for c in chars[:9]] + [10 if chars[9] == "X" else int(chars[9])]
    return sum((10 - i) * d for i, d in enumerate(digits)) % 11 == 0
