"""The synthesis engine's example tasks (issue 31), one per shape of wiring, a user's size each
(20 train, 20 validation, 40 test). Real BIG-bench data where a source holds the shape, read
from the bigbench==1.0.0 sdist; one task generated from a seed where none does:

- novel_units: a tool of six arguments (three numbers, three units) fed from one text
  (unit_conversion/novel_systems);
- si_units: a number and two units, both units text cut from one text
  (unit_conversion/si_conversion);
- isbn_check: a tool that returns a bool, the answer a label Valid / Invalid (generated: no
  BIG-bench task holds this shape with a checkable rule);
- area_units: two tools in sequence, to square meters and from them
  (unit_conversion/chained_conversion, the rows whose units are areas);
- acronyms: no tool, the answer a chain of the text alone (mult_data_wrangling/get_caps_*).

Run by ``scripts/extract_datasets.py`` (``--only`` names them), or alone:
    .venv/bin/python scripts/synthesis_tasks.py --bigbench-sdist PATH
"""

from __future__ import annotations

import json
import re
import sys
import tarfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extract_datasets import BIGBENCH, SMALL_SIZES, write_splits  # noqa: E402

TASKS = ("novel_units", "si_units", "isbn_check", "area_units", "acronyms")
SOURCES = {"novel_units": ["unit_conversion/novel_systems"],
           "si_units": ["unit_conversion/si_conversion"],
           "area_units": ["unit_conversion/chained_conversion"],
           "acronyms": [f"mult_data_wrangling/get_caps_{a}_freetext_{b}"
                        for a in (1, 2, 3) for b in (1, 2)]}
AREA = re.compile(r"^(?:(?:milli|centi|deci|deca|hecto|kilo)?meters|millimeters|feet|inches|"
                  r"yards|miles|light-years|(?:mm|cm|dm|m|dam|hm|km|ft|in|yd|mi|ly))\^2$")


def _best(example: dict) -> str:
    return example["target"] if "target" in example else \
        max(example["target_scores"], key=example["target_scores"].get)


def _number(text: str) -> str:
    """The answer's number (``267 swerts.`` -> ``267``): the metric compares numbers."""
    return re.match(r"\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?)", text).group(1)


def rows_of(task: str, examples: list[dict]) -> list[dict]:
    rows = []
    for i, ex in enumerate(examples):
        text, target = ex["input"].strip(), _best(ex)
        if task == "area_units":  # both units areas (not a pressure, N / m^2)
            units = re.findall(r"([\w-]+\^2)", text)
            if "/" in text or len(units) != 2 or not all(AREA.match(u) for u in units):
                continue
            source = re.search(r"\d ([\w-]+\^2)", text).group(1)
            if source.startswith(("light-years", "ly")) and "e" not in _number(target):
                continue  # BIG-bench wrote these huge answers without their exponent
        if task == "acronyms":
            text, target = text.strip("'"), target.strip("'")
        else:
            target = _number(target)
        rows.append({"id": f"{task}-{i}", "inputs": {"question": text},
                     "expected": {"answer": target}})
    if task == "acronyms":  # its subtasks repeat examples: each once
        unique = {r["inputs"]["question"]: r for r in rows}
        rows = list(unique.values())
    return rows


def isbn_rows(seed: int = 0, n: int = 120) -> list[dict]:
    """ISBN-10s, half with their right check digit, half with a wrong one, asked about in a few
    phrasings (a generated task: the rule is the user's tool)."""
    rng = np.random.default_rng(seed)
    phrasings = ("Is {} a valid ISBN-10?", "Check this ISBN: {}. Valid or invalid?",
                 "A customer typed the ISBN {} into the form. Is it valid?",
                 "Validate the book number {} (ISBN-10).")
    rows = []
    for i in range(n):
        digits = [int(d) for d in rng.integers(0, 10, size=9)]
        check = (11 - sum((10 - k) * d for k, d in enumerate(digits)) % 11) % 11
        valid = i % 2 == 0
        if not valid:
            check = (check + int(rng.integers(1, 11))) % 11
        last = "X" if check == 10 else str(check)
        body = "".join(map(str, digits))
        isbn = f"{body[0]}-{body[1:4]}-{body[4:9]}-{last}" if rng.random() < 0.5 else body + last
        rows.append({"id": f"isbn_check-{i}",
                     "inputs": {"question": phrasings[int(rng.integers(len(phrasings)))]
                                .format(isbn)},
                     "expected": {"answer": "Valid" if valid else "Invalid"}})
    return rows


ATTRIBUTION = """# Data source

BIG-bench {what}, from the PyPI sdist `{bigbench}`, file(s) {files}. License: Apache-2.0
(BIG-bench authors, https://github.com/google/BIG-bench). A fixed seeded sample of {size} of its
{n} {kind} (the size of a user's own small task), converted to localsym's JSONL rows by
`scripts/synthesis_tasks.py` ({how}). `tools.py` is this example's own code (a user's tool),
not BIG-bench's.

{canary}
"""


def extract(sdist: Path, only: set[str]) -> None:
    wanted = {t: s for t, s in SOURCES.items() if not only or t in only}
    loaded: dict[str, list] = {t: [] for t in wanted}
    canary = ""
    with tarfile.open(sdist) as tar:
        for member in tar:
            for task, subs in wanted.items():
                for sub in subs:
                    if member.name.endswith(f"bigbench/benchmark_tasks/{sub}/task.json"):
                        data = json.load(tar.extractfile(member))  # type: ignore[arg-type]
                        loaded[task] += data["examples"]
                        canary = data.get("canary", canary)
    size = sum(SMALL_SIZES.values())
    for task, examples in sorted(loaded.items()):
        rows = rows_of(task, examples)
        how = "the text as BIG-bench shows it; the answer its number" if task != "acronyms" \
            else "each example once: the subtasks repeat them"
        files = ", ".join(f"`bigbench/benchmark_tasks/{s}/task.json`" for s in SOURCES[task])
        write_splits(task, rows, ATTRIBUTION.format(
            what=f"task {', '.join(SOURCES[task])}", bigbench=BIGBENCH, files=files, size=size,
            n=len(rows), kind="examples" + (" whose two units are areas"
                                            if task == "area_units" else ""),
            how=how, canary=canary), sizes=SMALL_SIZES)
    if not only or "isbn_check" in only:
        write_splits("isbn_check", isbn_rows(), """# Data source

Generated by `scripts/synthesis_tasks.py` (`isbn_rows`, seed 0): random ISBN-10s, half with
their right check digit and half with a wrong one, asked about in four phrasings. No BIG-bench
task holds this shape (a tool that returns a bool, the answer a label) with a rule a tool can
check. `tools.py` is this example's own code (a user's tool).
""", sizes=SMALL_SIZES)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bigbench-sdist", type=Path, required=True)
    parser.add_argument("--only", nargs="*", default=[])
    extract(parser.parse_args().bigbench_sdist, set(parser.parse_args().only))
