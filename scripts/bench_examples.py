"""Every shipped example trained as a user runs it, against what `--estimate` said before:
calls made and wall seconds (the estimate's ratio to each), peak memory, scores before and after.

    .venv/bin/python scripts/bench_examples.py [--examples arithmetic,word_sorting]
        [--out examples.jsonl] [--work DIR]

Each example gets an empty cache directory of its own: first `localsym train CONFIG --estimate`,
then `localsym train CONFIG --quiet` under /usr/bin/time -v (the shipped config as it is, a fresh
run directory). The model's speeds are measured once, alone, before the first example, and the
same figures given to every estimate. Run it alone on the machine (llama.cpp's threads spin).
Prints Markdown tables: the estimate against the run, and the runs (scores, memory).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_memory import LOCALSYM, ROOT, peak_mib  # noqa: E402


def estimate(config: Path, cache: Path) -> dict:
    out = subprocess.run([LOCALSYM, "train", str(config), "--estimate"], cwd=ROOT, text=True,
                         capture_output=True, env={**os.environ, "LOCALSYM_CACHE_DIR": str(cache)})
    if out.returncode != 0:  # refused (a dataset the model writes): the run is still measured
        print(f"--estimate refused on {config}: {out.stderr.strip()[-300:]}", flush=True)
        return {"calls": None, "seconds": None, "rehearsal_seconds": None, "steps": None}
    return json.loads(out.stdout.split("\n", 1)[1])


def one(name: str, work: Path, speed: Path | None) -> dict:
    config = ROOT / "examples" / name / "config.yaml"
    cache = work / "cache" / name
    cache.mkdir(parents=True, exist_ok=True)
    if speed is not None and speed.is_file():
        shutil.copy(speed, cache / "speed.json")
    est = estimate(config, cache)
    run_dir = work / "runs" / name
    os.environ["LOCALSYM_CACHE_DIR"] = str(cache)  # the run's cache: /usr/bin/time passes it on
    mib, rc, wall = peak_mib([LOCALSYM, "train", str(config), "--quiet", "--run-dir",
                              str(run_dir)], ROOT)
    s = json.loads((run_dir / "summary.json").read_text())
    made = sum(u["misses"] for u in s["llm_calls"].values())
    return {"example": name, "estimate_calls": est["calls"], "estimate_seconds": est["seconds"],
            "rehearsal_seconds": est["rehearsal_seconds"], "estimate_steps": est["steps"],
            "calls_made": made, "calls_cached": sum(u["hits"] for u in s["llm_calls"].values()),
            "wall": round(wall, 1), "peak_mib": round(mib), "exit": rc, "steps": s["steps"],
            "accepted": s["accepted"], "test_before": s["test_before"],
            "test_after": s["test_after"], "val_before": s["val_before"],
            "val_after": s["val_after"], "test_size": s["test_size"], "ended": s["ended"]}


def ratio(a: float | None, b: float) -> str:
    return f"{a / b:.2f}" if a is not None and b else "–"


def tables(rows: list[dict]) -> None:
    print("| example | estimate: calls, time | run: calls made, wall | calls ratio | "
          "time ratio |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        est = "refused" if r["estimate_calls"] is None else \
            f"{r['estimate_calls']}, {r['estimate_seconds']:.0f} s"
        print(f"| {r['example']} | {est} | "
              f"{r['calls_made']}, {r['wall']:.0f} s | {ratio(r['estimate_calls'], r['calls_made'])}"
              f" | {ratio(r['estimate_seconds'], r['wall'])} |")
    print()
    print("| example | test before → after | validation before → after | steps: accepted | "
          "calls made + cached | wall | peak RSS |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        test = f"{r['test_before']:.3f} → {r['test_after']:.3f}" \
            if r["test_after"] is not None else "–"
        print(f"| {r['example']} | {test} ({r['test_size']}) | {r['val_before']:.3f} → "
              f"{r['val_after']:.3f} | {r['steps']}: {r['accepted']} | {r['calls_made']} + "
              f"{r['calls_cached']} | {r['wall']:.0f} s | {r['peak_mib']} MiB |")
    within = [r for r in rows if r["calls_made"] and r["wall"] and r["estimate_calls"] and
              0.5 <= r["estimate_calls"] / r["calls_made"] <= 2 and
              0.5 <= r["estimate_seconds"] / r["wall"] <= 2]
    print(f"\nwithin 2x (calls and time): {len(within)} of {len(rows)}; largest peak "
          f"{max(r['peak_mib'] for r in rows)} MiB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", help="comma-separated example names (default: all)")
    ap.add_argument("--out", type=Path, default=None, help="JSONL of the rows (appended)")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    names = args.examples.split(",") if args.examples else \
        sorted(p.parent.name for p in (ROOT / "examples").glob("*/config.yaml"))
    work = args.work or Path(tempfile.mkdtemp(prefix="localsym-examples-"))
    speed = None
    rows = []
    for name in names:
        row = one(name, work, speed)
        speed = speed or work / "cache" / name / "speed.json"  # the first measurement, alone
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
    tables(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
