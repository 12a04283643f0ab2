"""GEPA (the ``gepa`` package, 0.1.4) on localsym's example tasks, through localsym's own model,
cache and metric, on the budget of metric calls localsym's full method used: the comparison the
learning issue asks for.

    pip install -e .[bench]        # gepa==0.1.4 (no further dependencies)
    .venv/bin/python scripts/bench_gepa.py --task arithmetic --budget-from RUN_DIR [--seed 0]
    .venv/bin/python scripts/bench_gepa.py --task sports_understanding --max-metric-calls 400

What GEPA optimizes: each node's instruction (its prompt's ``task`` text, one GEPA component per
node; the rest of the spec as shipped). Its evaluator runs the agent with localsym's Pipeline
(the same batched, schema-constrained decoding, the same tools) and scores with the task's
metric; its reflective dataset shows, per example, the node's inputs, what it answered (tool
calls included) and the metric's feedback with the expected answer; its reflection model is the
embedded model, asked through localsym for a JSON object holding the new instruction (free text
from a 135M model does not parse). Validation and test are the example's splits; GEPA's budget is
``--max-metric-calls`` or the examples scored by a localsym run (``--budget-from`` its run
directory: the validation at the start, and per step the batch, the minibatch screenings and the
validations). Prints the test score before and after, the metric and LLM calls, the wall time,
and ``gepa: TASK test BEFORE -> AFTER``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel, Field

from localsym.learn.checkpoint import RunDirectory

ROOT = Path(__file__).resolve().parent.parent


def metric_calls_of(run_dir: Path) -> int:
    """Examples a localsym training run scored (GEPA's unit of budget), from its events."""
    log = RunDirectory(run_dir)
    val_size = json.loads((run_dir / "summary.json").read_text())["val_size"]
    total = val_size if log.start() is not None else 0
    for e in log.steps():
        total += len(e.batch) + len(e.minibatch)
        for c in e.candidates:
            total += len(e.minibatch) if c.minibatch is not None else 0
            total += val_size if c.val is not None else 0
    return total


class Instruction(BaseModel):
    new_instruction: str = Field(description="the improved instruction, one paragraph")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-metric-calls", type=int, default=None)
    ap.add_argument("--budget-from", default=None, help="a localsym run directory")
    ap.add_argument("--out", default=None, help="append the result as a JSON line")
    args = ap.parse_args()
    if args.max_metric_calls is None and args.budget_from is None:
        ap.error("give --max-metric-calls or --budget-from")
    budget = args.max_metric_calls or metric_calls_of(Path(args.budget_from))
    work = Path(tempfile.mkdtemp(prefix="localsym-gepa-"))
    os.environ.setdefault("LOCALSYM_CACHE_DIR", str(work / "cache"))

    import gepa
    from gepa.core.adapter import EvaluationBatch

    from localsym.config import load_config
    from localsym.metrics import score
    from localsym.runner import Run

    config, base = load_config(ROOT / "examples" / args.task / "config.yaml")
    run = Run(config, base, run_dir=work / "run", quiet=True)
    pipeline, metric, spec = run.pipeline, run.metric, run.spec
    train, val, test = (run.splits[k] for k in ("train", "val", "test"))
    counts = {"metric": 0, "reflections": 0}

    def spec_of(candidate: dict[str, str]):
        nodes = [n.model_copy(update={"prompt": n.prompt.model_copy(
            update={"task": candidate.get(n.name, n.prompt.task)})}) for n in spec.nodes]
        return spec.model_copy(update={"nodes": tuple(nodes)})

    class Adapter:
        propose_new_texts = None  # GEPA's own instruction proposal, with our reflection model

        def evaluate(self, batch, candidate, capture_traces=False):
            pipeline.spec = spec_of(candidate)
            trajs = pipeline.forward_batch([ex.inputs for ex in batch])
            results = [score(metric, t.outputs if t.ok else {}, ex.expected, explain=True)
                       for t, ex in zip(trajs, batch)]
            counts["metric"] += len(batch)
            return EvaluationBatch(outputs=[t.outputs for t in trajs],
                                   scores=[r.score for r in results],
                                   trajectories=list(zip(trajs, batch, results))
                                   if capture_traces else None)

        def make_reflective_dataset(self, candidate, eval_batch, components_to_update):
            out = {}
            for name in components_to_update:
                rows = []
                for traj, ex, result in eval_batch.trajectories:
                    rec = next((r for r in traj.records if r.node == name), None)
                    if rec is None:
                        continue
                    said = rec.outputs if not rec.error else {"error": rec.error}
                    calls = [{"tool": c.tool, "args": c.args, "result": c.result or c.error}
                             for c in rec.tool_calls]
                    rows.append({"Inputs": rec.inputs,
                                 "Generated Outputs": {**said, **({"tool calls": calls}
                                                                  if calls else {})},
                                 "Feedback": f"score {result.score:.2f}; expected "
                                             f"{json.dumps(ex.expected)}; {result.feedback}"})
                out[name] = rows
            return out

    def reflect(prompt) -> str:
        counts["reflections"] += 1
        text = prompt if isinstance(prompt, str) else "\n\n".join(m["content"] for m in prompt)
        answer = run.optimizer_lm.generate([{"role": "user", "content": text}], Instruction,
                                           config.meta_sampling)
        return f"```\n{answer.new_instruction}\n```"

    seed_candidate = {n.name: n.prompt.task for n in spec.nodes}
    test_before = _mean(Adapter().evaluate(test, seed_candidate).scores)
    counts["metric"] = 0
    calls0, started = run.agent_lm.misses, time.perf_counter()
    result = gepa.optimize(seed_candidate=seed_candidate, trainset=train, valset=val,
                           adapter=Adapter(), reflection_lm=reflect, max_metric_calls=budget,
                           seed=args.seed, run_dir=str(work / "gepa"),
                           display_progress_bar=False, raise_on_exception=False)
    train_wall, metric_calls = time.perf_counter() - started, counts["metric"]
    calls_made = run.agent_lm.misses - calls0
    best = result.best_candidate
    test_after = _mean(Adapter().evaluate(test, best).scores)
    record = {"task": args.task, "seed": args.seed, "budget": budget,
              "metric_calls": metric_calls, "reflections": counts["reflections"],
              "candidates": len(result.candidates), "llm_calls_made": calls_made,
              "train_seconds": round(train_wall, 1), "test_before": test_before,
              "test_after": test_after, "test_size": len(test),
              "val_best": max(result.val_aggregate_scores),
              "val_seed": result.val_aggregate_scores[0],
              "best": best if best != seed_candidate else "(the seed instructions)"}
    print(json.dumps(record, indent=1))
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(record) + "\n")
    print(f"gepa: {args.task} test {test_before:.3f} -> {test_after:.3f}")
    run.agent_lm.close()
    return 0


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


if __name__ == "__main__":
    sys.exit(main())
