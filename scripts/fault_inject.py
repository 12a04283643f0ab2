"""Crash-safety proof: kill training runs with SIGKILL at many points, resume each, and check the
final agent is byte-identical to an uninterrupted run's, with every step logged exactly once.

    .venv/bin/python scripts/fault_inject.py                  # stub model, 24 kill points
    .venv/bin/python scripts/fault_inject.py --model smollm2-135m-instruct --trials 20

1. A reference run, uninterrupted, counts every fault point it passes (``localsym.faults``:
   atomic writes before fsync and before rename, the middle of a log append, before and after
   each cache write, the phases of a training step, after each checkpoint).
2. Each trial starts the same run with an empty cache and run directory and kills it at one
   point: the N-th point overall (N spread over the whole run) or the K-th pass of one site
   (every site is hit), or after a random delay (``--timer`` trials: wherever it happens to
   be, e.g. inside a SQLite transaction). Some trials kill the resumed run a second time; some
   truncate state.json after the kill (a torn checkpoint must fall back to checkpoints/).
3. Each trial is resumed with ``localsym train --resume`` until it finishes, then compared with
   the reference: best_spec.json, the final state's spec and every specs/step-*.json byte for
   byte, and the step events (steps 1..N once each, same decisions).

Prints a table and a JSON summary (last line); exits 1 if any trial differs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "object_counting"
CLI = [sys.executable, "-c", "import sys; from localsym.cli import main; sys.exit(main())"]


def write_config(directory: Path, model: str, steps: int) -> Path:
    config = {
        "name": "faults", "agent": str(EXAMPLE / "agent.yaml"),
        "dataset": {"train": str(EXAMPLE / "data" / "train.jsonl"),
                    "val": str(EXAMPLE / "data" / "val.jsonl"),
                    "test": str(EXAMPLE / "data" / "test.jsonl"), "limit": 2 * steps},
        "metric": "numeric_match", "loss": "language", "models": {"agent": model},
        # a small program search: its answers matter here only as what a resume must repeat
        "train": {"epochs": 1, "batch_size": 2, "seed": 0, "synthesis": {"values": 4000}},
        "sampling": {"max_tokens": 24, "max_tokens_limit": 48},
        "meta_sampling": {"max_tokens": 48, "max_tokens_limit": 96, "on_limit": "close",
                          "repeat_penalty": 1.3},
    }
    path = directory / "config.json"
    path.write_text(json.dumps(config, indent=1))
    return path


def train(args: list[str], cache: Path, fault: str = "", log: Path | None = None,
          kill_after: float | None = None) -> int:
    env = {**os.environ, "LOCALSYM_CACHE_DIR": str(cache), "LOCALSYM_FAULT": fault,
           "LOCALSYM_FAULT_LOG": str(log or "")}
    env.pop("LOCALSYM_CACHE_MODE", None)
    proc = subprocess.Popen(CLI + ["train", "--quiet", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
    if proc.returncode not in (0, -signal.SIGKILL):
        raise RuntimeError(f"train {args} exited {proc.returncode}: {err[-2000:]}")
    return proc.returncode


def outcome(run_dir: Path) -> dict:
    """What must be identical between runs: the agent files and the step log."""
    files = {p.relative_to(run_dir).as_posix(): p.read_bytes()
             for p in [run_dir / "best_spec.json", *sorted((run_dir / "specs").glob("*.json"))]}
    state = json.loads((run_dir / "state.json").read_text())
    files["state.spec"] = json.dumps(state["spec"], sort_keys=True).encode()
    events, bad_lines = [], 0
    for line in (run_dir / "events.jsonl").read_text(errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            bad_lines += 1
    steps = [(e["step"], e["decision"], e.get("val_after")) for e in events
             if e["event"] == "step"]
    starts = sum(e["event"] == "start" for e in events)
    return {"files": files, "steps": steps, "starts": starts, "done": state["done"],
            "bad_lines": bad_lines}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="stub", help="stub (default) or a GGUF model name/path")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--trials", type=int, default=24, help="point-kill trials")
    ap.add_argument("--timer", type=int, default=0, help="extra trials killed after a random delay")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", help="keep everything here (default: a temporary directory)")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="localsym-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    config = write_config(work, args.model, args.steps)

    started = time.perf_counter()
    log = work / "points.log"
    log.unlink(missing_ok=True)
    for old in ("ref", "ref-cache"):
        shutil.rmtree(work / old, ignore_errors=True)
    train([str(config), "--run-dir", str(work / "ref")], work / "ref-cache", log=log)
    ref_seconds = time.perf_counter() - started
    ref = outcome(work / "ref")
    sites = log.read_text().split()
    per_site = Counter(sites)
    print(f"reference: {len(ref['steps'])} steps {[s[1] for s in ref['steps']]}, "
          f"{len(sites)} fault points over {len(per_site)} sites, {ref_seconds:.1f}s")

    # kill points: one per site (a random pass of it), the rest spread over the whole run
    plans = [f"{site}:{rng.randint(1, n)}" for site, n in sorted(per_site.items())]
    while len(plans) < args.trials:
        plans.append(str(rng.randint(1, len(sites))))
    if args.trials < len(plans):  # fewer trials than sites: a random choice of the sites
        plans = sorted(rng.sample(plans, args.trials))
    plans = plans[:args.trials]
    plans += [f"timer:{rng.uniform(0.5, ref_seconds):.2f}" for _ in range(args.timer)]

    results, failures = [], 0
    for i, plan in enumerate(plans):
        run_dir, cache = work / f"t{i:02d}", work / f"t{i:02d}-cache"
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
        first = [str(config), "--run-dir", str(run_dir)]
        if plan.startswith("timer:"):
            rc = train(first, cache, kill_after=float(plan.split(":")[1]))
        else:
            rc = train(first, cache, fault=plan)
        kills = int(rc == -signal.SIGKILL)
        torn = double = False
        if kills and i % 5 == 3 and (run_dir / "state.json").is_file():
            state = run_dir / "state.json"  # damage the checkpoint as a disk might
            state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
            torn = True
        resume = ["--resume", str(run_dir)] if (run_dir / "run.json").is_file() else first
        if kills and i % 4 == 1:  # the resumed run is killed too, at its 5th point
            double = train(resume, cache, fault="5") == -signal.SIGKILL
            kills += double
        while train(resume, cache) != 0:
            pass
        got = outcome(run_dir)
        same_files = got["files"] == ref["files"]
        ok = same_files and got["steps"] == ref["steps"] and got["starts"] == 1 \
            and got["done"] and not got["bad_lines"]
        failures += not ok
        results.append({"plan": plan, "kills": kills, "torn_checkpoint": torn, "ok": ok,
                        "same_files": same_files, "steps": [s[0] for s in got["steps"]]})
        print(f"{plan:28s} kills={kills} torn={int(torn)} double={int(double)} "
              f"steps={[s[0] for s in got['steps']]} {'identical' if ok else 'DIFFERENT'}")

    summary = {"trials": len(results), "kills": sum(r["kills"] for r in results),
               "distinct_points": len({r["plan"] for r in results}),
               "sites": sorted(per_site), "torn_checkpoints": sum(r["torn_checkpoint"]
                                                                  for r in results),
               "identical": sum(r["ok"] for r in results), "different": failures,
               "model": args.model, "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(summary))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
