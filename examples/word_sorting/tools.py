"""This task's own tool (a user's code): sort words."""


def sort_words(words: str) -> str:
    """Sort words alphabetically; the words are separated by spaces."""
    return " ".join(sorted(words.split()))
