"""Your tools: typed arguments (str, int, float, bool), a docstring the agent reads, a JSON-able
result. Name them in config.yaml (tools:) and declare them in agent.yaml (tools:)."""


def sort_words(words: str) -> str:
    """Sort words alphabetically (case-insensitive); words separated by spaces."""
    return " ".join(sorted(words.split(), key=str.lower))
