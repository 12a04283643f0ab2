"""Speed of a training run on the embedded model (run by hand; figures go to BENCHMARKS.md).

    .venv/bin/python scripts/bench_speed.py [--example arithmetic] [--batch 8]

Measures, side by side in one run:
  1. prompt tokens actually evaluated / prompt tokens submitted, for a forward pass over a batch
     and for the loss + backward of that batch: node-major (localsym's order) vs example-major
     (one example at a time), each on a fresh model with the cache off, and checks both orders
     give the same trajectories;
  2. a whole `localsym train` run of the example with an empty cache, then the same run again
     (fully cached): the re-run's time / the first run's, and its model loads (target: 0 and
     <= 2 %);
  3. of the first run's wall time, the share spent outside llama.cpp's evaluation (framework
     overhead: rendering, decoding masks, validation, the cache, Python); target <= 5 %.
Constrained vs free decoding speed and cold vs warm schema compile: scripts/bench_lm.py.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from localsym.agent import Pipeline, default_tools  # noqa: E402
from localsym.config import load_config  # noqa: E402
from localsym.data import load_jsonl  # noqa: E402
from localsym.learn import LanguageLoss  # noqa: E402
from localsym.learn.backward import backward, backward_batch  # noqa: E402
from localsym.lm import open_lm  # noqa: E402
from localsym.rundata import load_spec  # noqa: E402

CLI = [sys.executable, "-c", "import sys; from localsym.cli import main; sys.exit(main())"]


def kv_reuse(example: Path, batch: int) -> dict:
    config, base = load_config(example / "config.yaml")
    spec = load_spec(config, base)
    examples = load_jsonl(base / config.dataset.train)[:batch]
    out = {}
    for order in ("example-major", "node-major"):
        lm = open_lm(cache_mode="off")
        b = lm.backend
        pipe = Pipeline(spec, lm, default_tools(), config.sampling)
        t0 = time.perf_counter()
        if order == "node-major":
            trajs = pipe.forward_batch([ex.inputs for ex in examples])
        else:
            trajs = [pipe.forward(ex.inputs) for ex in examples]
        fwd = (b.prompt_tokens_submitted, b.prompt_tokens_evaluated, time.perf_counter() - t0)
        loss = LanguageLoss(lm, spec.description, None, config.meta_sampling)
        t0 = time.perf_counter()
        if order == "node-major":
            losses = [loss(t, ex) for t, ex in zip(trajs, examples)]
            grads = backward_batch(trajs, losses, spec, lm, [ex.id for ex in examples],
                                   config.meta_sampling)
        else:
            grads = []
            for t, ex in zip(trajs, examples):
                grads.append(backward(t, loss(t, ex), spec, lm, ex.id, config.meta_sampling))
        back = (b.prompt_tokens_submitted - fwd[0], b.prompt_tokens_evaluated - fwd[1],
                time.perf_counter() - t0)
        out[order] = {
            "forward": {"submitted": fwd[0], "evaluated": fwd[1],
                        "ratio": round(fwd[1] / fwd[0], 3), "seconds": round(fwd[2], 1)},
            "loss+backward": {"submitted": back[0], "evaluated": back[1],
                              "ratio": round(back[1] / back[0], 3), "seconds": round(back[2], 1)},
            "_trajectories": [[(r.node, r.outputs) for r in t.records] for t in trajs],
            "_gradients": [g.model_dump() if not isinstance(g, Exception) else str(g)
                           for g in grads]}
        lm.close()
    same = out["node-major"].pop("_trajectories") == out["example-major"].pop("_trajectories")
    same_g = out["node-major"].pop("_gradients") == out["example-major"].pop("_gradients")
    return {"example": example.name, "batch": batch, **out, "same_trajectories": same,
            "same_gradients": same_g}


def rerun(example: Path) -> dict:
    cache = Path(tempfile.mkdtemp(prefix="localsym-bench-cache-"))
    runs = Path(tempfile.mkdtemp(prefix="localsym-bench-runs-"))
    env = {**os.environ, "LOCALSYM_CACHE_DIR": str(cache)}
    result = {}
    for name in ("first", "cached"):
        t0 = time.perf_counter()
        proc = subprocess.run(CLI + ["train", str(example / "config.yaml"), "--run-dir",
                                     str(runs / name), "--quiet"], env=env, capture_output=True,
                              text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        summary = json.loads((runs / name / "summary.json").read_text())
        agent = summary["llm_calls"]["agent"]
        result[name] = {"process_seconds": round(wall, 2), "run_seconds": summary["wall_seconds"],
                        "calls_made": agent["misses"], "calls_cached": agent["hits"],
                        "model_loads": agent["model_loads"], "eval_seconds": agent["eval_seconds"],
                        "prompt_tokens_submitted": agent["prompt_tokens_submitted"],
                        "prompt_tokens_evaluated": agent["prompt_tokens_evaluated"]}
    first, cached = result["first"], result["cached"]
    result["rerun_ratio"] = round(cached["process_seconds"] / first["process_seconds"], 4)
    result["same_agent"] = (runs / "first" / "best_spec.json").read_bytes() == \
        (runs / "cached" / "best_spec.json").read_bytes()
    result["overhead_share"] = round(1 - first["eval_seconds"] / first["run_seconds"], 3)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--example", default="arithmetic")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--skip-rerun", action="store_true")
    args = ap.parse_args()
    example = ROOT / "examples" / args.example
    report = {"kv_reuse": kv_reuse(example, args.batch)}
    print(json.dumps(report["kv_reuse"], indent=1), flush=True)
    if not args.skip_rerun:
        report["rerun"] = rerun(example)
        print(json.dumps(report["rerun"], indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
