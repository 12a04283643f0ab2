"""This task's own tool (a user's code): convert between SI prefixes of one unit."""

PREFIXES = {"milli": -3, "centi": -2, "deci": -1, "deca": 1, "hecto": 2, "kilo": 3}
SYMBOL_PREFIXES = {"m": -3, "c": -2, "d": -1, "da": 1, "h": 2, "k": 3}
BASES = {"meters": "m", "grams": "g", "liters": "L", "amps": "A", "hertz": "Hz", "kelvin": "K",
         "newtons": "N", "pascals": "Pa", "moles": "mol", "candelas": "cd"}


def _parse(unit: str) -> tuple[str, int]:
    """(base symbol, power of ten) of a unit written out (``hectonewtons``) or as a symbol
    (``hN``, ``daHz``, ``cd``)."""
    word = unit.strip().lower()
    for base, symbol in BASES.items():
        for prefix, power in [("", 0)] + list(PREFIXES.items()):
            if word in (prefix + base, prefix + base.rstrip("s")):
                return symbol, power
    symbols = set(BASES.values())
    if unit in symbols:
        return unit, 0
    for prefix in sorted(SYMBOL_PREFIXES, key=len, reverse=True):
        if unit.startswith(prefix) and unit[len(prefix):] in symbols:
            return unit[len(prefix):], SYMBOL_PREFIXES[prefix]
    raise ValueError(f"unknown unit {unit!r}")


def convert_si(amount: float, unit: str, to_unit: str) -> float:
    """Convert ``amount`` of ``unit`` into ``to_unit``, both the same SI unit with prefixes."""
    base, power = _parse(unit)
    to_base, to_power = _parse(to_unit)
    if base != to_base:
        raise ValueError(f"{unit!r} and {to_unit!r} measure different things")
    return round(amount * 10.0 ** (power - to_power), 9)
