"""Files: durable writes (a checkpoint or spec is either the old file or the new one, never torn;
appended events are whole lines) and reading text, JSON lines and YAML/JSON documents with one
clear error for a file that is missing, not UTF-8 or malformed."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import yaml

from localsym.errors import ConfigError
from localsym.faults import point


def user_path(value, what: str, fix: str = "give a path (a str or a pathlib.Path)") -> Path:
    """A path a user handed the API, or one clear ConfigError: not a str or os.PathLike (None, a
    number, a list, bytes), empty, or holding a lone surrogate no file system can name."""
    if isinstance(value, (bytes, bool)) or not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"{what} is {type(value).__name__} {str(value)[:40]!r}, not a path",
                          fix)
    text = os.fspath(value)
    if not isinstance(text, str) or not text:
        raise ConfigError(f"{what} is an empty path", fix)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{what} {text.encode('utf-8', 'backslashreplace').decode()} holds a "
                          "lone surrogate (not a name a file system can hold)",
                          "give a path in valid Unicode") from None
    return Path(text)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # the mode an ordinary write would give, not mkstemp's 0600
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            point("write.fsync")
            os.fsync(f.fileno())
        point("write.rename")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)  # the rename itself survives a power cut


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory
    finally:
        os.close(fd)


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line and fsync it. A torn last line (a crash mid-append) is ended first,
    so it stays one bad line that readers skip and never swallows the new record."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
    with open(path, "a+b") as f:
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
        data = line.encode("utf-8")
        f.write(data[:len(data) // 2])
        f.flush()
        point("append.mid")  # a kill here leaves a torn line
        f.write(data[len(data) // 2:])
        f.flush()
        os.fsync(f.fileno())


def jsonl_lines(text: str) -> list[str]:
    """The lines of JSONL text: split at "\n" only, as the writers end them. (``str.splitlines``
    also splits at U+2028, U+0085, \x1c ... which JSON strings may hold raw, and would cut a
    record in two.)"""
    return [line.removesuffix("\r") for line in text.split("\n")]


def read_text(path: str | os.PathLike, what: str, fix: str = "check the path") -> str:
    """A UTF-8 text file a user gave; unreadable or not UTF-8 is a ConfigError naming it."""
    path = Path(path)
    try:
        return path.read_text("utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror}", fix) from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{what} {path} is not UTF-8 text ({err.reason} at byte {err.start})",
                          "save the file as UTF-8") from None
    except UnicodeEncodeError:  # the path itself: a lone surrogate no file system can hold
        shown = str(path).encode("utf-8", "backslashreplace").decode("utf-8")
        raise ConfigError(f"cannot read {what} {shown}: the path holds a lone surrogate", fix) \
            from None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The records of a JSONL log; a torn line (left by an interrupted append) is skipped."""
    out = []
    for line in jsonl_lines(Path(path).read_text("utf-8", errors="replace")):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def rewrite_jsonl(path: str | os.PathLike, records: list[dict]) -> None:
    """Replace a JSONL log atomically with ``records``."""
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n"
                                    for r in records))


def parse_document(text: str, yaml_format: bool, what: str):
    """YAML or JSON text to data; a syntax error is a ConfigError naming ``what``."""
    try:
        if yaml_format:
            return yaml.safe_load(text)
        return json.loads(text)
    except Exception as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else \
            (f" at line {err.lineno}, column {err.colno}" if isinstance(err, json.JSONDecodeError)
             else "")
        why = err.msg if isinstance(err, json.JSONDecodeError) else \
            getattr(err, "problem", None) or str(err).splitlines()[0]
        context = getattr(err, "context", None)
        raise ConfigError(f"{what} is not valid {'YAML' if yaml_format else 'JSON'}{where}: "
                          f"{why}{f' ({context})' if context else ''}",
                          "fix the syntax there") from None


def load_document(path: str | os.PathLike, what: str, fix: str = "check the path"):
    """Read a YAML (.yaml/.yml) or JSON file; every failure is a ConfigError naming ``what``."""

    path = Path(path)
    text = read_text(path, what, fix)
    return parse_document(text, path.suffix in (".yaml", ".yml"), f"{what} {path}")


def validation_error(err, what: str, fix: str):
    """A pydantic ValidationError as one ConfigError line: where, and what is wrong."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    return ConfigError(f"{what}: {where + ': ' if where else ''}{msg}", fix)
