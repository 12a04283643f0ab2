"""The Jinja2 templates of ``prompts/``: node prompts and the algorithm's meta-prompts.

Templates are data: they ship inside the package (``localsym.prompts``) and a user may override
any of them by putting a file of the same name into ``$LOCALSYM_PROMPTS_DIR``. Rendering is
sandboxed (spec text comes from users and from model rewrites) and strict about undefined names.
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

from jinja2 import FunctionLoader, StrictUndefined, TemplateError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from localsym.errors import ConfigError


def _load(name: str) -> str | None:
    override = os.environ.get("LOCALSYM_PROMPTS_DIR")
    if override and (Path(override) / name).is_file():
        return (Path(override) / name).read_text("utf-8")
    resource = resources.files("localsym.prompts").joinpath(name)
    return resource.read_text("utf-8") if resource.is_file() else None


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(loader=FunctionLoader(_load), undefined=StrictUndefined,
                                         keep_trailing_newline=False, autoescape=False)


def render(name: str, **variables) -> str:
    """Render the template ``prompts/<name>``."""
    try:
        return environment().get_template(name).render(**variables).strip()
    except TemplateError as err:
        raise ConfigError(f"prompt template {name} failed to render: {err}",
                          "fix the template (or remove your override in LOCALSYM_PROMPTS_DIR)")


def render_text(text: str, **variables) -> str:
    """Render a prompt field that may use variables (``{{ question }}``)."""
    if "{" not in text:
        return text
    try:
        return environment().from_string(text).render(**variables)
    except TemplateError as err:
        raise ConfigError(f"prompt text {text[:60]!r} failed to render: {err}",
                          "use only the node's inputs as {{ variables }}")


def variables_of(text: str) -> set[str]:
    """The variables a prompt field uses; empty if it does not parse."""
    if "{" not in text:
        return set()
    try:
        return set(meta.find_undeclared_variables(environment().parse(text)))
    except TemplateError:
        return set()
