"""Examples and datasets: the Example type, JSONL/CSV loading with a field map, splits."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from localsym.errors import ConfigError
from localsym.files import jsonl_lines, read_text, user_path, validation_error
from localsym.text import unencodable  # noqa: F401 - its old home


class Example(BaseModel):
    """One sample: the agent's inputs, and the expected outputs when there is a ground truth."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    inputs: dict[str, Any]
    expected: dict[str, Any] | None = None
    feedback: str | None = None  # what a person said about an earlier answer (self-evolving use)

    @model_validator(mode="after")
    def _encodable(self):
        bad = unencodable(self.model_dump())
        if bad:
            raise ValueError(f"{bad} holds a lone surrogate (not valid Unicode text)")
        return self


def load_jsonl(path: str | Path) -> list[Example]:
    """Examples from a JSONL file, one ``{"id"?, "inputs": {...}, "expected"?: {...}}`` a line.
    A bad line is an error naming the file and line."""
    path = user_path(path, "the dataset", "give the path of a JSONL file")
    out = []
    for no, row in _json_rows(path):
        row.setdefault("id", f"{path.stem}-{no}")
        try:
            out.append(Example.model_validate(row))
        except ValidationError as err:
            raise validation_error(err, f"{path}:{no}: not a valid example",
                                   'each line must be {"inputs": {...}, "expected": {...}}') \
                from None
    return out


class FieldMap(BaseModel):
    """Which column of a user's file is which field: ``inputs: {question: q}`` means the
    agent's input ``question`` is the column ``q``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    inputs: dict[str, str]
    expected: dict[str, str] | None = None
    id: str | None = None


def load_table(path: str | Path, fields: FieldMap | dict | None = None) -> list[Example]:
    """Examples from a JSONL or CSV file. Without ``fields`` a JSONL file is in localsym's own
    shape (see ``load_jsonl``); with ``fields`` every row (a CSV row, or a flat JSON object a
    line) is mapped to inputs and expected outputs, so a file does not have to be rewritten."""
    path = user_path(path, "the dataset", "give a JSONL or CSV path")
    if fields is not None and not isinstance(fields, (dict, FieldMap)):
        raise ConfigError(f"fields {fields!r} is not a field map",
                          "pass a dict such as {'inputs': {'question': 'q'}, 'expected': "
                          "{'answer': 'a'}}, or leave it out")
    if isinstance(fields, dict):
        try:
            fields = FieldMap.model_validate(fields)
        except ValidationError as err:
            raise validation_error(err, "the field map", "pass a dict such as {'inputs': "
                                   "{'question': 'q'}, 'expected': {'answer': 'a'}}") from None
    is_csv = path.suffix.lower() in (".csv", ".tsv")
    if fields is None and not is_csv:
        return _unique(load_jsonl(path), path)
    if fields is None:
        raise ConfigError(f"dataset {path} is a CSV file and no field map was given",
                          "add dataset.fields, e.g. {inputs: {question: q}, expected: {answer: "
                          "a}} (agent field: column)")
    rows = _csv_rows(path) if is_csv else _json_rows(path)
    if not rows:
        raise ConfigError(f"dataset {path} has no rows", "add examples to it")
    wanted = list(fields.inputs.values()) + list((fields.expected or {}).values()) + \
        ([fields.id] if fields.id else [])
    out = []
    for no, row in rows:
        missing = [c for c in wanted if c not in row]
        if missing:
            raise ConfigError(f"{path}:{no}: no column {missing} (it has {sorted(row)})",
                              "fix dataset.fields (agent field: column) or the file")
        out.append(Example(
            id=str(row[fields.id]) if fields.id else f"{path.stem}-{no}",
            inputs={k: row[c] for k, c in fields.inputs.items()},
            expected={k: row[c] for k, c in fields.expected.items()} if fields.expected else None))
    return _unique(out, path)


def _csv_rows(path: Path) -> list[tuple[int, dict]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            header = reader.fieldnames or []
            twice = sorted({c for c in header if header.count(c) > 1})
            if twice:
                raise ConfigError(f"dataset {path}: the header names the column(s) {twice} more "
                                  "than once", "give every column its own name")
            rows = []
            for no, row in enumerate(reader, 2):
                if None in row or any(v is None for v in row.values()):
                    raise ConfigError(f"{path}:{no}: {len(header)} columns in the header, "
                                      f"another number in this row",
                                      "give every row one value per column (quote values with "
                                      "commas)")
                if any((v or "").strip() for v in row.values()):
                    rows.append((no, row))
            return rows
    except OSError as err:
        raise ConfigError(f"cannot read dataset {path}: {err.strerror}", "check the path") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"dataset {path} is not UTF-8 text ({err.reason} at byte {err.start})",
                          "save it as UTF-8 CSV") from None
    except csv.Error as err:
        limit = "field larger than field limit" in str(err)
        raise ConfigError(f"dataset {path} cannot be read as CSV ({err})",
                          "split the long value, or give the data as JSONL (no field limit)"
                          if limit else "check its quoting and delimiters") from None


def _json_rows(path: Path) -> list[tuple[int, dict]]:
    lines = jsonl_lines(read_text(path, "dataset"))
    out = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise ConfigError(f"{path}:{no}: not JSON ({err})", "one JSON object a line") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{path}:{no}: not a JSON object", "one JSON object a line")
        out.append((no, row))
    return out


def _unique(examples: list[Example], path: Path) -> list[Example]:
    seen: dict[str, int] = {}
    for i, ex in enumerate(examples):
        if ex.id in seen:
            raise ConfigError(f"dataset {path}: the id {ex.id!r} is used twice (examples "
                              f"{seen[ex.id] + 1} and {i + 1})",
                              "give every example its own id (ids name examples in the events, "
                              "the Pareto front and resume)")
        seen[ex.id] = i
    return examples


def split(examples: list[Example], fractions: tuple[float, ...], seed: int = 0
          ) -> list[list[Example]]:
    """Shuffle with ``seed`` and cut into parts of the given fractions (e.g. (0.5, 0.25, 0.25))."""
    order = np.random.default_rng(seed).permutation(len(examples))
    shuffled = [examples[i] for i in order]
    bounds = np.cumsum([0, *fractions]) / sum(fractions) * len(examples)
    return [shuffled[int(round(a)):int(round(b))] for a, b in zip(bounds, bounds[1:])]
