"""Peak memory (RSS) of `localsym train` on every shipped example and of a short `localsym eval`,
measured with /usr/bin/time -v (each command alone, on the embedded model unless the example
names another).

    .venv/bin/python scripts/bench_memory.py [--steps 1] [--examples arithmetic,word_sorting]

Each example's config is copied with ``train.max_steps`` set to ``--steps`` (the peak is reached
in the first step: the model, its KV cache, one step's calls; later steps repeat them) and a
fresh run directory; the cache is the user's, so a second run of this script is mostly cache
hits and shows the memory of the process itself. Prints a Markdown table and, last, the largest
peak of each kind.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
LOCALSYM = str(Path(sys.executable).parent / "localsym")


def peak_mib(command: list[str], cwd: Path) -> tuple[float, int, float]:
    """(peak RSS in MiB, exit status, wall seconds) of ``command``."""
    proc = subprocess.run(["/usr/bin/time", "-v", *command], cwd=cwd, capture_output=True,
                          text=True)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", proc.stderr)
    seconds = 0.0
    if wall:
        h, m, s = wall.groups()
        seconds = int(h or 0) * 3600 + int(m) * 60 + float(s)
    if proc.returncode not in (0, 3):
        print(proc.stderr[-1500:], file=sys.stderr)
    return (int(rss.group(1)) / 1024 if rss else float("nan")), proc.returncode, seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--examples", help="comma-separated example names (default: all)")
    args = ap.parse_args()
    names = args.examples.split(",") if args.examples else \
        sorted(p.parent.name for p in (ROOT / "examples").glob("*/config.yaml"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            src = ROOT / "examples" / name / "config.yaml"
            config = yaml.safe_load(src.read_text())
            config.setdefault("train", {})["max_steps"] = args.steps
            copy = src.parent / f".bench-memory-{name}.yaml"  # beside it: relative paths hold
            copy.write_text(yaml.safe_dump(config))
            try:
                mib, rc, wall = peak_mib([LOCALSYM, "train", str(copy), "--quiet", "--run-dir",
                                          f"{tmp}/{name}"], ROOT)
            finally:
                copy.unlink()
            rows.append(("train", name, mib, rc, wall))
            print(f"train {name}: {mib:.0f} MiB (exit {rc}, {wall:.0f} s)", flush=True)
        arith = ROOT / "examples" / "arithmetic"
        mib, rc, wall = peak_mib([LOCALSYM, "eval", str(arith / "agent.yaml"),
                                  str(arith / "data" / "test.jsonl"), "--metric",
                                  "numeric_match", "--limit", "24", "--quiet"], ROOT)
        rows.append(("eval", "arithmetic (24 examples)", mib, rc, wall))
    print("| command | example | peak RSS (MiB) | exit | wall (s) |")
    print("| --- | --- | --- | --- | --- |")
    for kind, name, mib, rc, wall in rows:
        print(f"| {kind} | {name} | {mib:.0f} | {rc} | {wall:.0f} |")
    for kind in ("train", "eval"):
        worst = max((r for r in rows if r[0] == kind), key=lambda r: r[2])
        print(f"largest {kind} peak: {worst[2]:.0f} MiB ({worst[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
