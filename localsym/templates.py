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
_items = contextvars.ContextVar("localsym_template_items", default=0)


class _LimitedEnvironment(ImmutableSandboxedEnvironment):
    """Jinja2's sandbox, plus limits a prompt cannot get around: range() items per render, the
    size of a repeated string or list, exponents, and the rendered length."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context, operator, left, right):
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > 64:
            raise SecurityError(f"exponent {right} is too large for a prompt")
        if operator == "*":
            seq, n = (left, right) if isinstance(left, (str, list, tuple)) else (right, left)
            if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and \
                    len(seq) * n > MAX_CHARS:
                raise SecurityError(f"repeating {len(seq)} items {n} times exceeds the prompt "
                                    f"limit of {MAX_CHARS}")
        return super().call_binop(context, operator, left, right)


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


def render(name: str, **variables) -> str:
    """Render the template ``prompts/<name>``."""
    try:
        return _bounded(environment().get_template(name), variables).strip()
    except (TemplateError, OverflowError, RecursionError) as err:
        raise ConfigError(f"prompt template {name} failed to render: {err}",
                          "fix the template (or remove your override in LOCALSYM_PROMPTS_DIR)")


def render_text(text: str, **variables) -> str:
    """Render a prompt field that may use variables (``{{ question }}``)."""
    if "{" not in text:
        return text
    try:
        return _bounded(environment().from_string(text), variables)
    except (TemplateError, OverflowError, RecursionError) as err:
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
