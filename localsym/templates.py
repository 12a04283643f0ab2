"""The Jinja2 templates of ``prompts/``: node prompts and the algorithm's meta-prompts.

Templates are data: they ship inside the package (``localsym.prompts``) and a user may override
any of them by putting a file of the same name into ``$LOCALSYM_PROMPTS_DIR``. Rendering is
sandboxed (spec text comes from users and from model rewrites) and strict about undefined names.
"""

from __future__ import annotations

import contextvars
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

from jinja2 import FunctionLoader, StrictUndefined, TemplateError, meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from localsym.errors import ConfigError


def _load(name: str) -> str | None:
    override = os.environ.get("LOCALSYM_PROMPTS_DIR")
    if override and (Path(override) / name).is_file():
        return (Path(override) / name).read_text("utf-8")
    resource = resources.files("localsym.prompts").joinpath(name)
    return resource.read_text("utf-8") if resource.is_file() else None


MAX_CHARS = 200_000  # a rendered prompt longer than this is a runaway template
MAX_ITEMS = 100_000  # range() items per render, all loops together
MAX_BITS = 65_536  # an integer a prompt computes (about 20,000 digits)
_items = contextvars.ContextVar("localsym_template_items", default=0)


class _LimitedEnvironment(ImmutableSandboxedEnvironment):
    """Jinja2's sandbox, plus limits a prompt cannot get around: range() items per render, the
    size of a repeated string or list, exponents, and the rendered length."""

    intercepted_binops = frozenset(["*", "**", "<<"])

    def call_binop(self, context, operator, left, right):
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > 64:
            raise SecurityError(f"exponent {right} is too large for a prompt")
        if operator in ("**", "*", "<<") and _int(left) and _int(right):
            bits = left.bit_length() * max(abs(right), 1) if operator == "**" else \
                left.bit_length() + (right if operator == "<<" else right.bit_length())
            if bits > MAX_BITS:
                raise SecurityError(f"a number of about {bits} bits is too large for a prompt")
        if operator == "*":
            seq, n = (left, right) if isinstance(left, (str, list, tuple)) else (right, left)
            if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and \
                    len(seq) * n > MAX_CHARS:
                raise SecurityError(f"repeating {len(seq)} items {n} times exceeds the prompt "
                                    f"limit of {MAX_CHARS}")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - jinja2's signature
        """A method call (``'x'.center(n)``, ``', '.join(...)``) whose result would pass the
        prompt limit is refused before it is made."""
        _check_size(getattr(__obj, "__name__", ""), getattr(__obj, "__self__", None), args,
                    kwargs)
        return super().call(__context, __obj, *args, **kwargs)


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_size(name: str, owner, args: tuple, kwargs: dict) -> None:
    """Refuse a string method or filter whose output would be over MAX_CHARS."""
    widths = [v for v in (*args, *kwargs.values()) if _int(v)]
    if any(abs(w) > MAX_CHARS for w in widths) and name not in ("__getitem__",):
        raise SecurityError(f"{name or 'a call'} with a size over {MAX_CHARS} in a prompt")
    if name == "join" and args:
        _check_join(args[0], owner if isinstance(owner, str) else "")
    if name == "replace" and isinstance(owner, str) and len(args) >= 2 and \
            isinstance(args[0], str) and isinstance(args[1], str) and args[0]:
        grown = len(owner) + owner.count(args[0]) * (len(args[1]) - len(args[0]))
        if grown > MAX_CHARS:
            raise SecurityError(f"replace would make {grown} characters, over the prompt limit")


def _check_join(items, separator: str) -> None:
    try:
        parts = list(items)
    except TypeError:
        return
    size = sum(len(p) if isinstance(p, str) else 16 for p in parts) + \
        len(separator) * max(len(parts) - 1, 0)
    if size > MAX_CHARS:
        raise SecurityError(f"join would make about {size} characters, over the prompt limit")


def _bounded_filter(name: str, fn):
    """A Jinja2 filter that refuses a result over the prompt limit before making it."""
    skip = 1 if getattr(fn, "jinja_pass_arg", None) is not None else 0  # a context comes first

    def filtered(*args, **kwargs):
        value, rest = (args[skip], args[skip + 1:]) if len(args) > skip else (None, ())
        if name == "join" and value is not None:
            _check_join(value, str(rest[0] if rest else kwargs.get("d", "")))
        _check_size("" if name == "join" else name, value if isinstance(value, str) else None,
                    rest, kwargs)
        return fn(*args, **kwargs)
    for attr in ("jinja_pass_arg",):
        if hasattr(fn, attr):
            setattr(filtered, attr, getattr(fn, attr))
    return filtered


def _range(*args):
    items = range(*args)
    used = _items.get() + len(items)
    if used > MAX_ITEMS:
        raise SecurityError(f"loops over more than {MAX_ITEMS} items in one prompt")
    _items.set(used)
    return items


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    env = _LimitedEnvironment(loader=FunctionLoader(_load), undefined=StrictUndefined,
                              keep_trailing_newline=False, autoescape=False)
    env.globals["range"] = _range
    for name in ("center", "indent", "wordwrap", "join", "replace", "truncate", "format",
                 "list", "batch", "slice"):
        env.filters[name] = _bounded_filter(name, env.filters[name])
    return env


def _bounded(template, variables: dict) -> str:
    """Render, stopping at MAX_CHARS; limits count per render."""
    token = _items.set(0)
    try:
        out, size = [], 0
        for piece in template.generate(**variables):
            size += len(piece)
            if size > MAX_CHARS:
                raise SecurityError(f"the rendered prompt exceeds {MAX_CHARS} characters")
            out.append(piece)
        return "".join(out)
    finally:
        _items.reset(token)


# what a template written by a user or a model can raise while rendering (a number with too
# many digits to print is a ValueError; an operation on the wrong types a TypeError)
RENDER_FAILURES = (TemplateError, ArithmeticError, RecursionError, ValueError, TypeError,
                   MemoryError, LookupError, AttributeError)


def render(name: str, **variables) -> str:
    """Render the template ``prompts/<name>``."""
    try:
        return _bounded(environment().get_template(name), variables).strip()
    except RENDER_FAILURES as err:
        raise ConfigError(f"prompt template {name} failed to render: {err}",
                          "fix the template (or remove your override in LOCALSYM_PROMPTS_DIR)")


def render_text(text: str, **variables) -> str:
    """Render a prompt field that may use variables (``{{ question }}``)."""
    if "{" not in text:
        return text
    try:
        return _bounded(environment().from_string(text), variables)
    except RENDER_FAILURES as err:
        raise ConfigError(f"prompt text {text[:60]!r} failed to render: {err}",
                          "use only the node's inputs as {{ variables }}, with small loops")


def variables_of(text: str) -> set[str]:
    """The variables a prompt field uses; empty if it does not parse."""
    if "{" not in text:
        return set()
    try:
        return set(meta.find_undeclared_variables(environment().parse(text)))
    except TemplateError:
        return set()
