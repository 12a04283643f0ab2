"""Evaluation throughput against an OpenAI-compatible server vs the number of concurrent requests.

    .venv/bin/python scripts/bench_endpoint.py                     # starts llama-cpp-python's server
    .venv/bin/python scripts/bench_endpoint.py --endpoint http://127.0.0.1:8080/v1 --model NAME

Without --endpoint it starts `python -m llama_cpp.server` on the embedded model on a loopback
port. Each concurrency level evaluates the same examples of examples/sports_understanding with
the cache off (every call reaches the server), checks the scores are identical to the sequential
run's, and reports examples/s and the speed-up. Also runs the in-process backend for reference.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from localsym.agent import Pipeline, PipelineSpec  # noqa: E402
from localsym.data import load_jsonl  # noqa: E402
from localsym.metrics import metric  # noqa: E402
from localsym.learn import LanguageLoss  # noqa: E402
from localsym.learn.evaluate import evaluate  # noqa: E402
from localsym.lm import SamplingParams, open_lm  # noqa: E402
from localsym.lm.models import resolve  # noqa: E402

SPORTS = ROOT / "examples" / "sports_understanding"


def start_server(parallel_threads: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model",
                             str(resolve(None).path), "--model_alias", "smollm2", "--host",
                             "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
                             "--n_threads", str(parallel_threads), "--verbose", "false"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(300):
        try:
            httpx.get(url + "/models", timeout=1)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def run(lm, examples, params) -> tuple[list[float], float]:
    pipe = Pipeline(PipelineSpec.load(SPORTS / "agent.yaml"), lm, params=params)
    start = time.perf_counter()
    scores = evaluate(pipe, examples, metric("exact_match"), LanguageLoss(lm))
    return scores, time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--examples", type=int, default=16)
    ap.add_argument("--levels", default="1,2,4,8")
    ap.add_argument("--threads", type=int, default=2, help="server threads (when started here)")
    args = ap.parse_args()
    examples = (load_jsonl(SPORTS / "data" / "val.jsonl") +
                load_jsonl(SPORTS / "data" / "test.jsonl"))[: args.examples]
    params = SamplingParams(max_tokens=24, max_tokens_limit=48)
    proc = None
    endpoint = args.endpoint
    if endpoint is None:
        proc, endpoint = start_server(args.threads)
    rows = []
    try:
        base = None
        for level in [int(x) for x in args.levels.split(",")]:
            lm = open_lm(args.model, endpoint=endpoint, cache_mode="off",
                         endpoint_options={"concurrency": level})
            scores, seconds = run(lm, examples, params)
            lm.close()
            base = base or (scores, seconds)
            rows.append({"backend": "endpoint", "concurrency": level,
                         "examples_per_s": round(len(examples) / seconds, 2),
                         "speedup": round(base[1] / seconds, 2),
                         "same_scores": scores == base[0], "mean": round(sum(scores) / len(scores), 3)})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if proc is not None:
            proc.kill()
    local = open_lm(cache_mode="off")
    scores, seconds = run(local, examples, params)
    local.close()
    rows.append({"backend": "in-process", "concurrency": 1,
                 "examples_per_s": round(len(examples) / seconds, 2),
                 "mean": round(sum(scores) / len(scores), 3)})
    print(json.dumps(rows[-1]))
    print("| backend | concurrent requests | examples/s | speed-up | same scores |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['backend']} | {r['concurrency']} | {r['examples_per_s']} | "
              f"{r.get('speedup', '')} | {r.get('same_scores', '')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
