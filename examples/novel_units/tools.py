"""This task's own tool (a user's code): convert an amount between two units defined by a rate."""


def convert(known: float, known_unit: str, equals: float, equals_unit: str, amount: float,
            to_unit: str) -> float:
    """Convert ``amount`` given that ``known`` of ``known_unit`` is ``equals`` of
    ``equals_unit``, into ``to_unit`` (one of the two units)."""
    if known == 0 or equals == 0:
        raise ValueError("a rate of zero")
    if to_unit == equals_unit:
        value = amount * equals / known
    elif to_unit == known_unit:
        value = amount * known / equals
    else:
        raise ValueError(f"{to_unit!r} is neither {known_unit!r} nor {equals_unit!r}")
    return round(value, 6)
