"""Evaluation throughput against an OpenAI-compatible server vs the number of concurrent requests.

    .venv/bin/python scripts/bench_endpoint.py                  # starts llama-server --parallel 4
    .venv/bin/python scripts/bench_endpoint.py --server llama-cpp-python   # its one-at-a-time server
    .venv/bin/python scripts/bench_endpoint.py --endpoint http://127.0.0.1:8080/v1 --model NAME

Without --endpoint it starts llama.cpp's `llama-server --parallel N` (built by scripts/setup.sh
from the pinned llama.cpp source; requests decoded together by continuous batching) on the
embedded model on a loopback port. Each concurrency level evaluates the same examples of
examples/sports_understanding with the cache off (every call reaches the server), checks the
outputs are identical to the sequential run's, and reports examples/s and the speed-up; the last
line is `speed-up at 4 in flight: X` (examples/s at 4 / at 1). Also runs the in-process backend
for reference.
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
from localsym.learn.evaluate import evaluate_runs  # noqa: E402
from localsym.lm import SamplingParams, open_lm  # noqa: E402
from localsym.lm.models import resolve  # noqa: E402

SPORTS = ROOT / "examples" / "sports_understanding"


def start_server(kind: str, threads: int, parallel: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = str(resolve(None).path)
    if kind == "llama-server":
        binary = Path(sys.prefix) / "bin" / "llama-server"
        if not binary.exists():
            sys.exit("llama-server is not built: run scripts/setup.sh (without LOCALSYM_SERVER=0)")
        command = [str(binary), "-m", model, "--alias", "smollm2", "--host", "127.0.0.1",
                   "--port", str(port), "--parallel", str(parallel), "-c", str(2048 * parallel),
                   "-t", str(threads)]
    else:
        command = [sys.executable, "-m", "llama_cpp.server", "--model", model, "--model_alias",
                   "smollm2", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
                   "--n_threads", str(threads), "--verbose", "false"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200 or kind != "llama-server":
                httpx.get(url + "/v1/models", timeout=1)
                return proc, url + "/v1"
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not start")


def run(lm, examples, params) -> tuple[list, float]:
    pipe = Pipeline(PipelineSpec.load(SPORTS / "agent.yaml"), lm, params=params)
    start = time.perf_counter()
    scores, runs = evaluate_runs(pipe, examples, metric("exact_match"), LanguageLoss(lm))
    return list(zip(scores, [t.outputs for t in runs])), time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--examples", type=int, default=16)
    ap.add_argument("--levels", default="1,2,4,8")
    ap.add_argument("--server", choices=("llama-server", "llama-cpp-python"),
                    default="llama-server", help="the server started here (without --endpoint)")
    ap.add_argument("--parallel", type=int, default=4, help="llama-server's slots")
    ap.add_argument("--threads", type=int, default=2, help="server threads (when started here)")
    args = ap.parse_args()
    examples = (load_jsonl(SPORTS / "data" / "val.jsonl") +
                load_jsonl(SPORTS / "data" / "test.jsonl"))[: args.examples]
    params = SamplingParams(max_tokens=24, max_tokens_limit=48)
    proc = None
    endpoint = args.endpoint
    if endpoint is None:
        proc, endpoint = start_server(args.server, args.threads, args.parallel)
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
                         "same_outputs": scores == base[0],
                         "mean": round(sum(s for s, _ in scores) / len(scores), 3)})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if proc is not None:
            proc.kill()
    local = open_lm(cache_mode="off")
    scores, seconds = run(local, examples, params)
    local.close()
    rows.append({"backend": "in-process", "concurrency": 1,
                 "examples_per_s": round(len(examples) / seconds, 2),
                 "mean": round(sum(s for s, _ in scores) / len(scores), 3)})
    print(json.dumps(rows[-1]))
    print("| backend | requests in flight | examples/s | speed-up | same outputs |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['backend']} | {r['concurrency']} | {r['examples_per_s']} | "
              f"{r.get('speedup', '')} | {r.get('same_outputs', '')} |")
    at = {r["concurrency"]: r["examples_per_s"] for r in rows if r["backend"] == "endpoint"}
    if 1 in at and 4 in at:
        print(f"speed-up at 4 in flight: {at[4] / at[1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
