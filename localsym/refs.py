"""A user's own Python functions named in a config: ``package.module:function`` (importable, or
a package next to the config) or ``file.py:function`` (a file, relative to the config).

Every way a reference can be wrong (no such module or file, a module that fails to import, no
such function, not callable, a signature that cannot take the call) is one ``ConfigError`` naming
the reference and the fix.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Callable

from localsym.errors import ConfigError


def is_reference(text: str) -> bool:
    return ":" in text


def resolve(ref: str, base: str | Path, what: str, example: str) -> Callable:
    """The function ``ref`` names. ``what`` ("metric", "tool") and ``example`` (a valid
    reference) go into the messages."""
    module_part, sep, name = ref.rpartition(":")
    if not sep or not module_part or not name.isidentifier():
        raise ConfigError(f"{what} reference {ref!r} is not MODULE:FUNCTION or FILE.py:FUNCTION",
                          f"write it like {example}")
    module = _load_file(module_part, Path(base), what, ref) if module_part.endswith(".py") \
        else _import(module_part, Path(base), what, ref)
    fn = getattr(module, name, None)
    if fn is None:
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                       and getattr(v, "__module__", None) == module.__name__)
        raise ConfigError(f"{what} reference {ref!r}: {module_part} has no function {name!r}",
                          f"define it there, or name one of {found}" if found else
                          f"define def {name}(...) in {module_part}")
    if not callable(fn):
        raise ConfigError(f"{what} reference {ref!r}: {name} is a {type(fn).__name__}, not a "
                          "function", f"make {name} a function")
    return fn


def check_arity(fn: Callable, n: int, ref: str, what: str, shape: str) -> None:
    """That ``fn`` can be called with ``n`` positional arguments."""
    try:
        inspect.signature(fn).bind(*range(n))
    except TypeError as err:
        raise ConfigError(f"{what} {ref!r} cannot be called as {shape} ({err})",
                          f"give it the signature {shape}") from None
    except ValueError:  # a builtin without a signature: trust it
        pass


def _import(dotted: str, base: Path, what: str, ref: str):
    if str(base.resolve()) not in sys.path:  # a package next to the config is importable
        sys.path.append(str(base.resolve()))
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError as err:
        raise ConfigError(f"{what} reference {ref!r}: no module named {err.name!r}",
                          f"install the package, put it next to the config, or use a file "
                          f"(e.g. {dotted.rsplit('.', 1)[-1]}.py:FUNCTION)") from None
    except Exception as err:  # the user's module raised while importing
        raise ConfigError(f"{what} reference {ref!r}: importing {dotted} failed: "
                          f"{type(err).__name__}: {err}", f"fix {dotted}") from None


def _load_file(file: str, base: Path, what: str, ref: str):
    path = (base / file).resolve()
    if not path.is_file():
        raise ConfigError(f"{what} reference {ref!r}: no file {path}",
                          "give the file's path relative to the config")
    # one module per file content: editing the file and reloading gives the new code
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    name = f"localsym_user_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None  # a .py path always has both
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        line = getattr(err, "lineno", None)
        raise ConfigError(f"{what} reference {ref!r}: loading {path} failed: "
                          f"{type(err).__name__}: {err}" + (f" (line {line})" if line else ""),
                          f"fix {path.name}") from None
    return module
