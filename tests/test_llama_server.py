"""The endpoint backend against llama.cpp's own server with parallel slots (``llama-server
--parallel 4``: requests decoded together by continuous batching), built by scripts/setup.sh from
the same pinned llama.cpp source as the in-process backend. Skipped when set-up was told not to
build it (LOCALSYM_SERVER=0)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import Verdict, free_port, wait_http
from localsym.agent import Pipeline, PipelineSpec
from localsym.data import load_jsonl
from localsym.learn import LanguageLoss
from localsym.learn.evaluate import evaluate_runs
from localsym.lm import SamplingParams, open_lm
from localsym.lm.models import resolve
from localsym.metrics import metric

ROOT = Path(__file__).resolve().parent.parent
SPORTS = ROOT / "examples" / "sports_understanding"
PARAMS = SamplingParams(max_tokens=24, max_tokens_limit=48)
BINARY = Path(sys.prefix) / "bin" / "llama-server"


def llama_server_binary() -> Path:
    found = BINARY if BINARY.exists() else shutil.which("llama-server")
    if not found:
        pytest.skip("llama-server is not built (scripts/setup.sh builds it unless "
                    "LOCALSYM_SERVER=0)")
    return Path(found)


class LlamaServer:
    """``llama-server --parallel 4`` on the embedded model on a loopback port (alias smollm2)."""

    def __init__(self, port: int | None = None, parallel: int = 4):
        self.port, self.parallel = port or free_port(), parallel
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(llama_server_binary()), "-m", str(resolve(None).path), "--alias", "smollm2",
             "--host", "127.0.0.1", "--port", str(self.port), "--parallel", str(self.parallel),
             "-c", str(2048 * self.parallel), "-t", "2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{self.port}/health", self.proc, seconds=120)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def server():
    s = LlamaServer()
    try:
        yield s
    finally:
        s.kill()


def _evaluate(url: str, examples, concurrency: int, **options):
    lm = open_lm("smollm2", endpoint=url, cache_mode="off",
                 endpoint_options={"concurrency": concurrency, **options})
    try:
        pipe = Pipeline(PipelineSpec.load(SPORTS / "agent.yaml"), lm, params=PARAMS)
        scores, runs = evaluate_runs(pipe, examples, metric("exact_match"), LanguageLoss(lm))
        return scores, [t.outputs for t in runs]
    finally:
        lm.close()


def test_a_structured_call_is_validated_in_the_servers_json_schema_form(server, cache_dir):
    lm = open_lm("smollm2", endpoint=server.url, cache_dir=cache_dir)
    value, completion = lm.call("Is 7 prime?", Verdict, max_tokens=32, max_tokens_limit=64)
    assert isinstance(value, Verdict) and value.label in ("yes", "no")
    assert lm.backend._format == "json_schema"  # llama-server takes OpenAI's form as is
    assert completion.completion_tokens > 0
    lm.close()


def test_results_are_identical_and_in_order_at_every_concurrency(server):
    """Greedy decoding on a server that batches requests together: the same outputs, in the
    examples' order, whether 1, 2, 4 or 8 requests are in flight."""
    examples = load_jsonl(SPORTS / "data" / "val.jsonl")[:8]
    results = {n: _evaluate(server.url, examples, n) for n in (1, 2, 4, 8)}
    first = results[1]
    assert len(first[0]) == 8 and all(o for o in first[1])
    for n, got in results.items():
        assert got == first, f"{n} in flight differs from 1"


def test_a_server_restart_mid_run_is_retried_and_the_results_are_the_same(server):
    """The server is killed while an evaluation is under way and started again on its port: the
    requests in flight and those sent while it is down are retried with backoff, and the run
    ends with the outputs of an uninterrupted one."""
    examples = load_jsonl(SPORTS / "data" / "test.jsonl")[:16]
    reference = _evaluate(server.url, examples, 2)
    got: dict = {}

    def run():
        got["result"] = _evaluate(server.url, examples, 2, retries=6, backoff=0.5)
    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(1.0)
    assert worker.is_alive(), "the evaluation ended before the restart: make it longer"
    server.kill()
    time.sleep(1.0)
    server.start()
    worker.join(300)
    assert got.get("result") == reference
