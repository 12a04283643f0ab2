"""What training captures on a user's small task: untrained, trained and the ceiling.

    .venv/bin/python scripts/bench_small_data.py [--tasks word_sorting,dyck_languages,...]
        [--seed 0] [--cache-dir DIR] [--out small_data.jsonl]

The small tasks (``examples/<task>/``, 20 train / 20 validation / 40 test, a tool of the task's
own in ``tools.py`` declared but not attached, no hint in the prompt) are trained as a user
would, with the real CLI and the shipped config: ``localsym train examples/<task>/config.yaml``.
For each task it prints the TEST score of the agent as written (untrained), of the agent
training ends with (trained) and of the agent bound by hand (``bound.yaml``: the ceiling), and

    captured = (trained - untrained) / (ceiling - untrained)

with the LLM calls made, the wall time of the run and the synthesis engine's own time in it
(``search``); its last line is ``captured: X``, the mean over the tasks. Each task's cache starts empty (``--cache-dir``, default a new temporary
directory), so the wall time is a first run's. Benchmark alone: llama.cpp's threads spin.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TASKS = ("word_sorting", "dyck_languages", "subtraction_lines", "periodic_elements",
         "novel_units", "si_units", "isbn_check", "area_units", "acronyms")


def ceiling(task: str, cache: Path) -> float:
    """The hand-bound agent's test score (no model call: its node ends at the tool's call)."""
    config = yaml.safe_load((ROOT / "examples" / task / "config.yaml").read_text())
    tools = [t if isinstance(t, str) else t["ref"] for t in config.get("tools", [])]
    cmd = [sys.executable, "-m", "localsym.cli", "eval", str(ROOT / "examples" / task / "bound.yaml"),
           str(ROOT / "examples" / task / config["dataset"]["test"]), "--metric",
           config["metric"]] + [a for t in tools for a in ("--tool", str(ROOT / "examples" / task / t))]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         env={**os.environ, "LOCALSYM_CACHE_DIR": str(cache)})
    return float(json.loads(out.stdout)["score"])


def train(task: str, seed: int, cache: Path, runs: Path) -> dict:
    """Train the task with the shipped config (the seed overridden); its run summary."""
    config_path = ROOT / "examples" / task / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["train"] = {**config.get("train", {}), "seed": seed}
    for key in ("agent",):
        config[key] = str(ROOT / "examples" / task / config[key])
    config["dataset"] = {k: str(ROOT / "examples" / task / v) if k in ("train", "val", "test")
                         else v for k, v in config["dataset"].items()}
    config["tools"] = [str(ROOT / "examples" / task / t) if isinstance(t, str) else t
                       for t in config.get("tools", [])]
    path = runs / f"{task}-{seed}.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = runs / f"{task}-{seed}"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "localsym.cli", "train", str(path), "--quiet",
                    "--run-dir", str(run_dir)], check=True,
                   env={**os.environ, "LOCALSYM_CACHE_DIR": str(cache)})
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["bench_wall"] = round(time.perf_counter() - start, 1)
    steps = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()
             if line.strip() and json.loads(line).get("event") == "step"]
    summary["search_seconds"] = round(sum((e.get("synthesis") or {}).get("seconds", 0.0)
                                          for e in steps), 1)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("small_data.jsonl"))
    parser.add_argument("--runs-dir", type=Path, default=None,
                        help="where the run directories are kept (default: a new temporary "
                             "directory, printed at the end)")
    args = parser.parse_args()
    done = {}
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            row = json.loads(line)
            done[(row["task"], row["seed"])] = row
    rows = []
    runs = args.runs_dir or Path(tempfile.mkdtemp(prefix="localsym-small-"))
    runs.mkdir(parents=True, exist_ok=True)
    for task in args.tasks.split(","):
        if (task, args.seed) in done:
            rows.append(done[(task, args.seed)])
            continue
        cache = (args.cache_dir or runs / "cache") / task
        summary = train(task, args.seed, cache, runs)
        top = ceiling(task, cache)
        row = {"task": task, "seed": args.seed, "untrained": summary["test_before"],
               "trained": summary["test_after"], "ceiling": top,
               "calls_made": summary["spent"]["calls"], "wall": summary["bench_wall"],
               "search": summary["search_seconds"],
               "val": [summary["val_before"], summary["val_after"]]}
        span = top - row["untrained"]
        row["captured"] = round((row["trained"] - row["untrained"]) / span, 3) if span > 0 \
            else 1.0
        rows.append(row)
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
    print("| task | untrained | trained | ceiling | captured | LLM calls made | wall | search |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['task']} | {r['untrained']:.3f} | {r['trained']:.3f} | {r['ceiling']:.3f} | "
              f"{r['captured']:.3f} | {r['calls_made']} | {r['wall']:.0f} s | "
              f"{r.get('search', 0):.1f} s |")
    print(f"(run directories: {runs})")
    mean = sum(r["captured"] for r in rows) / len(rows)
    print(f"captured: {mean:.3f}")


if __name__ == "__main__":
    main()
