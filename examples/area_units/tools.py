"""This task's own tools (a user's code): areas to and from square meters."""

from math import floor, log10

METERS = {"mm": 1e-3, "millimeters": 1e-3, "cm": 1e-2, "centimeters": 1e-2, "dm": 1e-1,
          "decimeters": 1e-1, "m": 1.0, "meters": 1.0, "dam": 10.0, "decameters": 10.0,
          "hm": 100.0, "hectometers": 100.0, "km": 1000.0, "kilometers": 1000.0,
          "in": 0.0254, "inches": 0.0254, "ft": 0.3048, "feet": 0.3048, "yd": 0.9144,
          "yards": 0.9144, "mi": 1609.344, "miles": 1609.344,
          "ly": 9.4607304725808e15, "light-years": 9.4607304725808e15}


def _side(unit: str) -> float:
    name = unit.strip()
    if not name.endswith("^2") or name[:-2] not in METERS:
        raise ValueError(f"not an area unit: {unit!r}")
    return METERS[name[:-2]]


def to_square_meters(amount: float, unit: str) -> float:
    """An area in ``unit`` (``km^2``, ``feet^2``) as square meters."""
    return amount * _side(unit) ** 2


def from_square_meters(amount: float, unit: str) -> float:
    """An area in square meters as ``unit``, to three significant digits."""
    value = amount / _side(unit) ** 2
    if value == 0:
        return 0.0
    return round(value, 2 - int(floor(log10(abs(value)))))
