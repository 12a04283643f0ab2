"""Programming-by-example string tasks through the path a user takes: each task becomes a task
directory (an agent of one node, its rows as data, exact match, the stub model so the engine
alone is measured) trained with ``localsym train`` in a process of its own, one core, a time
limit per task. Reads the SyGuS-Comp PBE string tasks (``.sl``: the constraints as rows), the
82-task set with the published CVC4 and EuPhony results, and CrossBeam's 89 SyGuS tasks (JSON).

    python scripts/bench_pbe.py                        # SyGuS PBE_SLIA_Track, solved within 30 s
    python scripts/bench_pbe.py --suite probe          # the 82, beside CVC4's and EuPhony's
    python scripts/bench_pbe.py --suite long --curve   # test accuracy against training rows
    python scripts/bench_pbe.py --hash-seed 1 --out a.json; ... --hash-seed 2 --out b.json
    python scripts/bench_pbe.py --compare a.json b.json  # the same programs?

A short task's rows are its training and validation rows and solved means every row right; a
``-long`` task trains on its first 20 rows and is scored on the rest (test accuracy). The data
is read from ``../shared/data/pbe`` (``--data``); it is never copied into the project. The
last line is ``pbe: solved X/N, test Y``."""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = re.compile(r'"(?:[^"]|"")*"|[()]|[^\s()"]+')
SMT_TYPES = {"String": "str", "Int": "int", "Bool": "bool"}


# -- reading the tasks ----------------------------------------------------------------------
def _sexp(text: str):
    stack: list[list] = [[]]
    for tok in TOKEN.findall(re.sub(r";[^\n]*", "", text)):
        if tok == "(":
            stack.append([])
        elif tok == ")":
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(tok)
    return stack[0]


def _atom(tok):
    if isinstance(tok, list):  # (- 3)
        if len(tok) == 2 and tok[0] == "-":
            return -int(tok[1])
        raise ValueError(f"not a constant: {tok}")
    if tok.startswith('"'):
        return _unescape(tok[1:-1].replace('""', '"'))
    if tok in ("true", "false"):
        return tok == "true"
    return int(tok)


def _unescape(text: str) -> str:
    return re.sub(r"\\u\{([0-9a-fA-F]+)\}|\\x([0-9a-fA-F]{2})",
                  lambda m: chr(int(m.group(1) or m.group(2), 16)), text)


def read_sl(path: Path) -> dict | None:
    """A ``.sl`` task: its argument names and types, the answer's type, its rows."""
    forms = _sexp(path.read_text(encoding="utf-8", errors="replace"))
    fun = next((f for f in forms if f and f[0] == "synth-fun"), None)
    if fun is None:
        return None
    name, params, out_type = fun[1], fun[2], fun[3]
    args = [(p[0], SMT_TYPES.get(p[1], "str")) for p in params]
    rows = []
    for f in forms:
        if f and f[0] == "constraint" and isinstance(f[1], list) and f[1][0] == "=":
            call, out = f[1][1], f[1][2]
            if isinstance(call, list) and call and call[0] == name:
                rows.append(([_atom(a) for a in call[1:]], _atom(out)))
            elif isinstance(out, list) and out and out[0] == name:
                rows.append(([_atom(a) for a in out[1:]], _atom(call)))
    if not rows:
        return None
    return {"name": path.stem, "args": args, "type": SMT_TYPES.get(out_type, "str"),
            "rows": rows}


def suite(data: Path, which: str) -> list[dict]:
    """The tasks of a suite, each {name, args, type, rows, test}."""
    if which == "crossbeam":
        out = []
        for t in json.loads((data / "crossbeam-sygus-89.json").read_text()):
            rows = [(ex["inputs"], ex["output"]) for ex in t["trainExamples"]]
            n = len(rows[0][0])
            out.append({"name": t["name"].removesuffix(".sl"), "rows": rows, "test": [],
                        "args": [(f"in{i}", "str") for i in range(n)], "type": "str"})
        return out
    if which == "probe":
        paths = sorted((data / "probe" / "string").glob("*.sl"))
    else:
        base = data / "sygus" / "PBE_SLIA_Track"
        paths = sorted((base / "euphony").glob("*.sl")) + sorted((base / "from_2018").glob("*.sl"))
    tasks = [t for t in (read_sl(p) for p in paths) if t is not None]
    for t in tasks:
        t["test"] = []
    if which == "long":
        tasks = [t for t in tasks if t["name"].endswith("-long") and len(t["rows"]) > 20]
        for t in tasks:
            t["rows"], t["test"] = t["rows"][:20], t["rows"][20:]
    return tasks


# -- one task as a user's task directory ----------------------------------------------------
def _ident(name: str, i: int) -> str:
    clean = re.sub(r"\W", "_", name)
    return clean if re.fullmatch(r"[A-Za-z_]\w{0,63}", clean) else f"in{i}"


def write_task(task: dict, where: Path, train: list, test: list, seconds: float) -> Path:
    names = [_ident(a, i) for i, (a, _) in enumerate(task["args"])]
    agent = {"name": "pbe", "inputs": [{"name": n} for n in names],
             "nodes": [{"name": "f", "inputs": names,
                        "outputs": [{"name": "answer", "type": task["type"]}]}]}
    (where / "data").mkdir(parents=True, exist_ok=True)
    (where / "agent.yaml").write_text(json.dumps(agent))

    def rows(part: list, tag: str) -> str:
        return "".join(json.dumps({"id": f"{tag}{i}", "inputs": dict(zip(names, ins)),
                                   "expected": {"answer": out}}) + "\n"
                       for i, (ins, out) in enumerate(part))
    (where / "data" / "train.jsonl").write_text(rows(train, "r"))
    (where / "data" / "val.jsonl").write_text(rows(train, "r"))
    (where / "data" / "test.jsonl").write_text(rows(test or train, "t"))
    config = {"agent": "agent.yaml", "metric": "exact_match", "models": {"agent": "stub"},
              "dataset": {"train": "data/train.jsonl", "val": "data/val.jsonl",
                          "test": "data/test.jsonl"},
              "train": {"synthesis": {"seconds": seconds}}}
    (where / "config.yaml").write_text(json.dumps(config))
    return where / "config.yaml"


def run_task(task: dict, train: list, test: list, args) -> dict:
    """Train on ``train`` through ``localsym train`` (its own process, one core) and read what
    it found: the program, validation and test scores, values computed per second."""
    with tempfile.TemporaryDirectory(prefix="pbe-") as tmp:
        config = write_task(task, Path(tmp), train, test, args.seconds)
        env = {**os.environ, "PYTHONHASHSEED": str(args.hash_seed), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": str(ROOT),  # this checkout's localsym, whatever is installed
               "LOCALSYM_CACHE_DIR": str(Path(tmp) / "cache")}
        start = time.monotonic()
        try:
            proc = subprocess.run([sys.executable, "-m", "localsym.cli", "train", str(config),
                                   "--quiet", "--run-dir", str(Path(tmp) / "run")],
                                  capture_output=True, text=True, env=env,
                                  timeout=args.seconds * 3 + 60)
            err = proc.stderr[-300:] if proc.returncode else ""
        except subprocess.TimeoutExpired:
            err = "timed out"
        wall = time.monotonic() - start
        out = {"name": task["name"], "train": len(train), "test": len(test), "wall": round(wall, 1),
               "program": None, "val": 0.0, "test_score": 0.0, "tried": 0, "seconds": 0.0,
               "error": err}
        run = Path(tmp) / "run"
        if (run / "summary.json").exists():
            summary = json.loads((run / "summary.json").read_text())
            out["val"], out["test_score"] = summary.get("val_after") or 0.0, \
                summary.get("test_after") or 0.0
            spec = json.loads((run / "best_spec.json").read_text())
            program = spec["nodes"][0].get("program")
            out["program"] = program and program["outputs"]["answer"]
            if program and program.get("guard"):
                out["program"] += f"  where {program['guard']}"
        for line in (run / "events.jsonl").read_text().splitlines() if \
                (run / "events.jsonl").exists() else []:
            syn = json.loads(line).get("synthesis") or {}
            out["tried"] += syn.get("tried", 0)
            out["seconds"] += syn.get("seconds", 0.0)
        out["solved"] = bool(out["program"]) and (out["test_score"] if test else out["val"]) >= 1.0
        return out


# -- reports ---------------------------------------------------------------------------------
def published(data: Path) -> dict[str, dict[str, bool]]:
    out: dict[str, dict[str, bool]] = {}
    for tool in ("cvc4", "euphony"):
        path = data / "probe" / "results" / f"{tool}.csv"
        if path.exists():
            with path.open() as f:
                for row in csv.DictReader(f):
                    name = Path(row["Benchmark"]).stem
                    program = (row.get("Program") or "").strip()
                    try:
                        seconds = float(row.get("Time") or "inf")
                    except ValueError:
                        seconds = float("inf")
                    out.setdefault(name, {})[tool] = bool(program) and program != "None" and \
                        seconds < 600  # a run that hit the 600 s limit wrote None

    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "pbe")
    ap.add_argument("--suite", choices=["sygus", "probe", "crossbeam", "long"], default="sygus")
    ap.add_argument("--seconds", type=float, default=30.0, help="per task (the engine's cap)")
    ap.add_argument("--jobs", type=int, default=1, help="tasks at once (one core each)")
    ap.add_argument("--only", default="", help="a regex on task names")
    ap.add_argument("--limit", type=int, default=0, help="the first N tasks")
    ap.add_argument("--curve", action="store_true", help="test accuracy against 1, 2, 3, 5, "
                    "10, 20 training rows (long tasks)")
    ap.add_argument("--sizes", default="1,2,3,5,10,20", help="the curve's training rows")
    ap.add_argument("--hash-seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="per-task results as JSON")
    ap.add_argument("--compare", nargs=2, type=Path, help="two --out files: the same programs?")
    ap.add_argument("--summary", type=Path, help="an --out file: print its summary again")
    args = ap.parse_args()
    if args.compare:
        a, b = (json.loads(p.read_text()) for p in args.compare)
        pa = {r["name"] + f"/{r['train']}": r["program"] for r in a}
        pb = {r["name"] + f"/{r['train']}": r["program"] for r in b}
        diff = sorted(k for k in pa.keys() & pb.keys() if pa[k] != pb[k])
        for k in diff:
            print(f"  {k}: {pa[k]!r} != {pb[k]!r}")
        print(f"compare: {len(pa.keys() & pb.keys()) - len(diff)}/{len(pa.keys() & pb.keys())} "
              "tasks gave the same program")
        sys.exit(1 if diff else 0)
    if args.summary:
        summarize(json.loads(args.summary.read_text()), args, published(args.data))
        return
    if not args.data.exists():
        sys.exit(f"bench_pbe: no PBE data at {args.data} (see ../shared/data/pbe/README.md); "
                 "pass --data")
    tasks = suite(args.data, "long" if args.curve else args.suite)
    tasks = [t for t in tasks if re.search(args.only, t["name"])]
    tasks = tasks[:args.limit] if args.limit else tasks
    sizes = [int(k) for k in args.sizes.split(",")]
    jobs = [(t, t["rows"][:k], t["test"]) for t in tasks
            for k in (sizes if args.curve else (len(t["rows"]),))]
    results = []
    with ThreadPoolExecutor(args.jobs) as pool:
        for r in pool.map(lambda j: run_task(*j, args), jobs):
            results.append(r)
            print(f"{r['name']:<36} {r['train']:>3} rows  {'solved' if r['solved'] else '------'}"
                  f"  val {r['val']:.2f} test {r['test_score']:.2f}  {r['wall']:>5.1f}s  "
                  f"{r['program'] or r['error'][:80]}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    summarize(results, args, published(args.data))


def summarize(results: list[dict], args, pub: dict) -> None:
    tried, secs = sum(r["tried"] for r in results), sum(r["seconds"] for r in results)
    rate = tried / secs if secs else 0.0
    if args.curve:
        print("\ntraining rows  test accuracy (mean over tasks)  solved")
        for k in sorted({r["train"] for r in results}):
            part = [r for r in results if r["train"] == k]
            if part:
                print(f"{k:>13}  {sum(r['test_score'] for r in part) / len(part):.3f}"
                      f"{'':>30}{sum(r['solved'] for r in part)}/{len(part)}")
    if args.suite == "probe" and pub:
        ours = {r["name"]: r["solved"] for r in results}
        for tool in ("cvc4", "euphony"):
            theirs = {n for n in ours if pub.get(n, {}).get(tool)}
            mine = {n for n, ok in ours.items() if ok}
            print(f"published {tool}: {len(theirs)}/{len(ours)} (600 s); both {len(mine & theirs)}, "
                  f"only localsym {len(mine - theirs)}, only {tool} {len(theirs - mine)}: "
                  f"{', '.join(sorted(theirs - mine)[:12])}")
    solved = sum(r["solved"] for r in results)
    test = sum(r["test_score"] for r in results) / max(1, len(results))
    print(f"values computed per second (one core, engine only): {rate:,.0f}")
    print(f"pbe: solved {solved}/{len(results)}, test {test:.3f}")


if __name__ == "__main__":
    main()
