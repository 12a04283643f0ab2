"""What training achieves, against baselines (the paper's ablation), on the example tasks.

    .venv/bin/python scripts/bench_ablation.py [--tasks object_counting,sports_understanding]
        [--seeds 0,1,2] [--model NAME] [--out ablation.jsonl]

For each task with a ground-truth metric and each seed (the seed orders the training batches),
trains with `localsym train` (the real CLI) in four variants and reports the TEST score of the
agent each ends with (never the validation score its gate used):

  untrained     the agent as written (no training; the same for every seed: greedy decoding)
  autope        prompt optimization per node without back-propagation: every node's prompt is
                tuned from the final loss alone (optimizers [prompt], backprop false)
  demos         demonstrations only: labeled and bootstrapped sets (optimizers [demonstrations])
  full          symbolic learning as shipped: loss -> back-propagated gradients -> candidates from
                the prompt, tool and workflow optimizers, code-listed structural edits,
                demonstration sets and merges, screened and gated on evidence
  full_nobp     the same without back-propagation (every node gets the final loss's feedback)

with the LLM calls made (cache misses) and cached, and the wall time. One cache directory per
task is shared by its runs, so the evaluations every variant repeats (the untrained agent on
validation and test) are paid once: the calls-made column counts only what a run added.
Results go to --out (JSON lines; a finished run is not run again) and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from localsym.learn.checkpoint import RunDirectory

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-c", "import sys; from localsym.cli import main; sys.exit(main())"]
VARIANTS = {
    "autope": {"optimizers": ["prompt"], "backprop": False},
    "demos": {"optimizers": ["demonstrations"]},
    "full": {},
    "full_nobp": {"backprop": False},
}


def task_config(task: str, seed: int, variant: str, model: str | None, work: Path) -> Path:
    src = ROOT / "examples" / task
    config = yaml.safe_load((src / "config.yaml").read_text())
    config["agent"] = str(src / config["agent"])
    ds = config["dataset"]
    for key in ("train", "val", "test", "path"):
        if ds.get(key):
            ds[key] = str(src / ds[key])
    for i, tool in enumerate(config.get("tools", [])):  # FILE.py:fn refs, relative to the config
        ref = tool["ref"] if isinstance(tool, dict) else tool
        file, _, fn = ref.partition(":")
        if file.endswith(".py") and not Path(file).is_absolute():
            ref = f"{src / file}:{fn}"
            config["tools"][i] = {**tool, "ref": ref} if isinstance(tool, dict) else ref
    config["train"] = {**config.get("train", {}), "seed": seed, **VARIANTS[variant]}
    if model:
        config.setdefault("models", {})["agent"] = model
    config["name"] = f"{task}-{variant}-s{seed}"
    path = work / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="object_counting,sports_understanding,arithmetic")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variants", default="full,autope,demos")
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", default="ablation.jsonl")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    out = Path(args.out)
    done = {}
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done[(r["task"], r["variant"], r["seed"])] = r
    work = Path(args.workdir or tempfile.mkdtemp(prefix="localsym-ablation-"))
    work.mkdir(parents=True, exist_ok=True)
    for task in args.tasks.split(","):
        cache = work / f"cache-{task}"
        for seed in [int(s) for s in args.seeds.split(",")]:
            for variant in args.variants.split(","):
                if (task, variant, seed) in done:
                    continue
                config = task_config(task, seed, variant, args.model, work)
                run_dir = work / "runs" / config.stem
                t0 = time.perf_counter()
                proc = subprocess.run(CLI + ["train", str(config), "--run-dir", str(run_dir),
                                             "--quiet"], capture_output=True, text=True,
                                      env={**os.environ, "LOCALSYM_CACHE_DIR": str(cache)})
                wall = time.perf_counter() - t0
                if proc.returncode != 0:
                    print(f"{config.stem}: FAILED {proc.stderr[-500:]}", flush=True)
                    continue
                s = json.loads((run_dir / "summary.json").read_text())
                calls = s["llm_calls"]
                record = {"task": task, "variant": variant, "seed": seed,
                          "test_before": s["test_before"], "test_after": s["test_after"],
                          "val_before": s["val_before"], "val_after": s["val_after"],
                          "test_size": s["test_size"], "steps": s["steps"],
                          "accepted": s["accepted"], "rolled_back": s["rolled_back"],
                          "calls_made": sum(v["misses"] for v in calls.values()),
                          "calls_cached": sum(v["hits"] for v in calls.values()),
                          "wall_seconds": round(wall, 1), "model": args.model or "embedded",
                          "train_seconds": round(sum(
                              e.seconds or 0 for e in RunDirectory(run_dir).steps()), 1)}
                done[(task, variant, seed)] = record
                with out.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                print(json.dumps(record), flush=True)
    print(table(list(done.values())))
    return 0


def _ms(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def _se(p: float, n: int) -> float:
    """The standard error of a 0/1 test score ``p`` over ``n`` examples."""
    return (p * (1 - p) / n) ** 0.5 if n else 0.0


def table(records: list[dict]) -> str:
    lines = ["| task | variant | test score (mean ± sd over seeds) | per seed | steps accepted "
             "/ rolled back | LLM calls made (cached) per run | training wall per run | "
             "wall per run |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for task in dict.fromkeys(r["task"] for r in records):
        rows = [r for r in records if r["task"] == task]
        before = rows[0]["test_before"]
        n = rows[0]["test_size"]
        lines.append(f"| {task} (n={n}) | untrained | {before:.3f} ± {_se(before, n):.3f} (se) | "
                     f"(greedy: seed-independent) | - | - | - | - |")
        for variant in VARIANTS:
            rs = sorted((r for r in rows if r["variant"] == variant), key=lambda r: r["seed"])
            if not rs:
                continue
            scores = [r["test_after"] for r in rs]
            lines.append(
                f"| | {variant} | {_ms(scores)} | {', '.join(f'{x:.3f}' for x in scores)} | "
                f"{sum(r['accepted'] for r in rs)} / {sum(r['rolled_back'] for r in rs)} | "
                f"{statistics.mean(r['calls_made'] for r in rs):.0f} "
                f"({statistics.mean(r['calls_cached'] for r in rs):.0f}) | "
                f"{statistics.mean(r.get('train_seconds', 0) for r in rs):.0f}s | "
                f"{statistics.mean(r['wall_seconds'] for r in rs):.0f}s |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
