"""What the embedded model can reach on the tasks training does not improve, probed directly:
agents written by hand as the best a search could find, scored on the example's splits.

    .venv/bin/python scripts/bench_ceiling.py [--model NAME] [--cache-dir DIR]

- object_counting: the calculator attached and required, its argument forced to a sum of small
  numbers, the answer bound to the result; then the same with worked examples (tool turns
  included) whose expressions are written by hand, one term per item. If the model cannot count
  even then, no listed or LLM-written edit will make it.
- sports_understanding: the answer chosen by the model's log-probability of each choice, raw,
  calibrated by a content-free input (Zhao et al. 2021) and by the split's mean (batch
  calibration). If none is above chance, the model holds no signal a search could surface.

Prints one line per probe: ``ceiling: TASK PROBE SPLIT SCORE (n)``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml

from localsym.agent.pipeline import Pipeline
from localsym.agent.spec import PipelineSpec
from localsym.data import load_jsonl
from localsym.lm import open_lm
from localsym.metrics import metric, score

ROOT = Path(__file__).resolve().parent.parent
SUM = "[0-9]{1,2}( ?[+] ?[0-9]{1,2}){0,20}"
# worked examples from object_counting's train split, the expression written by hand
WORKED = {"object_counting-459": "1 + 1 + 1", "object_counting-206": "1 + 3 + 1 + 1 + 1",
          "object_counting-350": "2 + 1", "object_counting-814": "2 + 1 + 3 + 1 + 1 + 1 + 1 + 3",
          "object_counting-674": "1 + 1", "object_counting-683": "1 + 2 + 1 + 1 + 1"}


def counting_agents() -> dict[str, PipelineSpec]:
    data = yaml.safe_load((ROOT / "examples/object_counting/agent.yaml").read_text())
    data["tools"] = [{**data["tools"][0], "patterns": {"expression": SUM}}]
    node = {**data["nodes"][0], "tools": ["calculator"], "tool_choice": "required",
            "bind": {"answer": "calculator"}}
    bound = {**data, "nodes": [node]}
    train = {ex.id: ex for ex in load_jsonl(ROOT / "examples/object_counting/data/train.jsonl")}
    demos = []
    for ex_id, expr in WORKED.items():
        value = eval(expr)  # the hand-written sums above, nothing else
        assert value == train[ex_id].expected["answer"], ex_id
        demos.append({"inputs": train[ex_id].inputs, "outputs": train[ex_id].expected,
                      "tool_calls": [{"tool": "calculator", "args": {"expression": expr},
                                      "result": str(value)}]})
    worked = {**bound, "nodes": [{**node, "demonstrations": demos}]}
    return {"bound sum": PipelineSpec.from_data(bound),
            "bound sum + worked examples": PipelineSpec.from_data(worked)}


def counting(lm, split: str) -> None:
    examples = load_jsonl(ROOT / f"examples/object_counting/data/{split}.jsonl")
    for probe, spec in counting_agents().items():
        runs = Pipeline(spec, lm).forward_batch([ex.inputs for ex in examples])
        got = [score(metric("numeric_match"), t.outputs, ex.expected).score if t.ok else 0.0
               for t, ex in zip(runs, examples)]
        print(f"ceiling: object_counting {probe} {split} {np.mean(got):.3f} ({len(got)})",
              flush=True)


def choosing(lm, split: str) -> None:
    spec = PipelineSpec.from_data(
        yaml.safe_load((ROOT / "examples/sports_understanding/agent.yaml").read_text()))
    pipeline, node = Pipeline(spec, lm), spec.nodes[0]
    field, name = node.outputs[0], node.inputs[0]
    examples = load_jsonl(ROOT / f"examples/sports_understanding/data/{split}.jsonl")

    def logprobs(inputs: dict) -> np.ndarray:
        messages = pipeline.messages_for(node, inputs)
        return np.array([lm.logprob(messages, json.dumps({field.name: c}))[0]
                         for c in field.choices])

    free = logprobs({name: "N/A"})
    table = np.array([logprobs(ex.inputs) for ex in examples])
    gold = np.array([field.choices.index(ex.expected[field.name]) for ex in examples])
    for probe, shift in (("log-probability", 0.0), ("content-free calibrated", free),
                         ("batch calibrated", table.mean(axis=0))):
        right = (np.argmax(table - shift, axis=1) == gold).mean()
        print(f"ceiling: sports_understanding {probe} {split} {right:.3f} ({len(examples)})",
              flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args()
    lm = open_lm(args.model, cache_dir=args.cache_dir)
    try:
        for split in ("val", "test"):
            counting(lm, split)
            choosing(lm, split)
    finally:
        lm.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
