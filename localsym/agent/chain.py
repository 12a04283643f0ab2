"""Glue chains: a binding's operations (``agent/glue.py``) in order. Checked kind by kind when
a spec is validated, run on a value at run time (every output bounded), described as a person
reads them, and written by an optimizer as ``{op, arg}`` pairs."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ValidationError

from localsym.agent.glue import (MAX_ITEMS, MAX_OPS, MAX_TEXT, OP_TYPES, AnyOp, GlueError, Kind,
                                 Op, number_text)


# The operations an optimizer's structured output may name with one text parameter (``arg``):
# the parameter each reads it into (None: no parameter). ``after_last``/``before_last`` are
# ``after``/``before`` at the last occurrence.
FLAT_OPS = {"after": "delimiter", "after_last": "delimiter", "before": "delimiter",
            "before_last": "delimiter", "strip_prefix": "prefix", "strip_suffix": "suffix",
            "trim": "chars", "regex": "pattern", "case": "to", "numbers": None, "words": None,
            "chars": None, "split": "separator", "item": "index", "join": "separator",
            "count": None, "int": None, "float": None, "round": "digits", "findall": "pattern",
            "keep": "pattern", "format": "template", "length": None, "sort": None,
            "reverse": None, "unique": None, "sum": None, "product": None}


def from_flat(op: str, arg: str) -> Op:
    """The operation an optimizer wrote as ``{op, arg}``; a ValueError names what is wrong."""
    if op not in FLAT_OPS:
        raise ValueError(f"unknown glue operation {op!r}")
    param = FLAT_OPS[op]
    kwargs: dict[str, Any] = {}
    if op.endswith("_last"):
        op, kwargs["occurrence"] = op[:-len("_last")], "last"
    if param in ("index", "digits"):
        try:
            kwargs[param] = int(arg.strip() or "0")
        except ValueError:
            raise ValueError(f"glue {op}: {arg!r} is not a whole number") from None
    elif param is not None and (arg or param not in ("chars", "separator")):
        kwargs[param] = arg
    try:
        return OP_TYPES[op](**kwargs)
    except ValidationError as err:
        raise ValueError(f"glue {op}({arg!r}): {err.errors()[0]['msg']}") from None


def check_chain(chain: tuple, start: Kind | None = None) -> Kind | None:
    """The kind a chain gives, after checking that each step takes what the one before gives
    (``start``: the kind of the value it starts from, None when not known); a ValueError names
    the first step that does not fit."""
    if len(chain) > MAX_OPS:
        raise ValueError(f"a glue chain has at most {MAX_OPS} operations, not {len(chain)}")
    kind = start
    for i, op in enumerate(chain):
        if kind is not None and not _fits(op.takes, kind):
            raise ValueError(f"glue step {i + 1} ({op.describe()}) takes a {op.takes}, but gets "
                             f"a {kind}")
        kind = op.gives
    return kind


def _fits(takes: Kind, given: Kind) -> bool:
    return takes == given or (takes == "text" and given == "number")


def normalize_chain(value: Any) -> Any:
    """A chain as a spec may write it: bare names (``trim``) become ``{"op": "trim"}``."""
    if isinstance(value, (list, tuple)):
        return [{"op": v} if isinstance(v, str) else v for v in value]
    return value


def kind_of(value: Any) -> Kind:
    if isinstance(value, list):
        return "list"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "number"
    return "text"


def run(chain: tuple, value: Any) -> Any:
    """``value`` through every step of ``chain``; GlueError where a step cannot apply."""
    if value is None:
        raise GlueError("there is no value to reshape")
    if isinstance(value, bool) or not isinstance(value, (str, int, float, list)):
        value = str(value)
    for op in chain:
        kind = kind_of(value)
        if not _fits(op.takes, kind):
            raise GlueError(f"{op.describe()} takes a {op.takes}, but gets a {kind}")
        if op.takes == "text" and kind == "number":
            value = number_text(value)
        if op.takes == "list":
            value = [str(v) for v in value]
        try:
            value = op(value)
        except GlueError:
            raise
        except (ArithmeticError, ValueError, TypeError, RecursionError, MemoryError) as err:
            raise GlueError(f"{op.describe()} cannot apply ({type(err).__name__}: "
                            f"{str(err)[:80]})") from None
        if isinstance(value, str) and len(value) > MAX_TEXT:
            raise GlueError(f"{op.describe()} made a text of over {MAX_TEXT} characters")
        if isinstance(value, list) and len(value) > MAX_ITEMS:
            raise GlueError(f"{op.describe()} made a list of over {MAX_ITEMS} items")
    return value


def describe(chain: tuple) -> str:
    return " | ".join(op.describe() for op in chain)


def _checked_chain(ops: tuple) -> tuple:
    check_chain(ops)
    return ops


# A glue chain on a binding or a program value: typed operations, checked kind by kind.
Chain = Annotated[tuple[AnyOp, ...], BeforeValidator(normalize_chain),
                  AfterValidator(_checked_chain)]
