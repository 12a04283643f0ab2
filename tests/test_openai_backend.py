"""The OpenAI-compatible backend against a real server on a loopback port: llama-cpp-python's own
server (`python -m llama_cpp.server`) on the embedded model. Error paths use small stand-in
servers (FastAPI) that misbehave on purpose."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from conftest import Verdict, free_port, wait_http
from localsym.agent import Pipeline, PipelineSpec
from localsym.data import load_jsonl
from localsym.metrics import metric
from localsym.errors import EndpointError, InvalidOutputError, ModelNotFoundError
from localsym.learn import LanguageLoss
from localsym.learn.evaluate import evaluate
from localsym.lm import SamplingParams, open_lm
from localsym.lm.models import resolve

ROOT = Path(__file__).resolve().parent.parent
SPORTS = ROOT / "examples" / "sports_understanding"
QUESTIONS = ["Is 7 prime?", "Is the sky green?", "Do fish fly?", "Is ice cold?"]
FAST = {"retries": 1, "backoff": 0.05}


@pytest.fixture(scope="module")
def server():
    """llama-cpp-python's OpenAI-compatible server on the embedded model, alias smollm2."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(resolve(None).path),
         "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", "2048", "--verbose", "false"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", proc)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.kill()
        proc.wait()


class StandIn:
    """A FastAPI app on a loopback port, in a thread."""

    def __init__(self, app: FastAPI):
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_http(f"http://127.0.0.1:{self.port}/health")
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(5)


def stand_in(chat) -> StandIn:
    app = FastAPI()
    app.get("/health")(lambda: {"ok": True})
    app.get("/v1/models")(lambda: {"data": [{"id": "m"}]})

    @app.post("/v1/chat/completions")
    async def completions(request: Request):
        return await chat(await request.json())
    return StandIn(app)


def _answer(text: str, finish="stop") -> dict:
    return {"choices": [{"message": {"role": "assistant", "content": text},
                         "finish_reason": finish}], "usage": {"prompt_tokens": 5,
                                                              "completion_tokens": 3}}


def test_structured_call_through_the_server_is_validated_and_cached(server, cache_dir):
    lm = open_lm("smollm2", endpoint=server, cache_dir=cache_dir)
    value, completion = lm.call("Is 7 prime?", Verdict, max_tokens=32, max_tokens_limit=64)
    assert isinstance(value, Verdict) and value.label in ("yes", "no")
    assert completion.completion_tokens > 0 and not completion.cached
    assert lm.backend._format == "json_object"  # llama-cpp-python's server form, found by itself
    # the key names the model, not the URL: the same server under another address hits
    moved = open_lm("smollm2", endpoint=server.replace("127.0.0.1", "localhost"),
                    cache_dir=cache_dir)
    again, hit = moved.call("Is 7 prime?", Verdict, max_tokens=32, max_tokens_limit=64)
    assert hit.cached and again == value
    lm.close()
    moved.close()


def test_greedy_choices_agree_with_the_in_process_backend(server):
    """Both engines decode greedily under the same schema; the enum fields agree with the
    in-process decoding that tokenizes the whole prompt at once and lets the model choose its
    JSON's spaces (v1) as the server does. (Free strings can differ: the server's JSON grammar
    allows other whitespace, which changes the model's token path; v2 also forces the JSON's
    structure and tokenizes message by message, so its answers differ more.)"""
    remote = open_lm("smollm2", endpoint=server, cache_mode="off")
    local = open_lm(cache_mode="off", decoding="v1")  # the whole prompt tokenized at once
    params = SamplingParams(max_tokens=24, max_tokens_limit=48, on_limit="close")
    try:
        for q in QUESTIONS[:2]:
            a = remote.generate(q, Verdict, params)
            b = local.generate(q, Verdict, params)
            assert a.label == b.label, q
    finally:
        remote.close()
        local.close()


def test_concurrent_evaluation_gives_the_sequential_scores_in_order(server, cache_dir):
    spec = PipelineSpec.load(SPORTS / "agent.yaml")
    examples = load_jsonl(SPORTS / "data" / "val.jsonl")[:6]
    params = SamplingParams(max_tokens=24, max_tokens_limit=48)
    scores = {}
    for workers in (1, 3):
        lm = open_lm("smollm2", endpoint=server, cache_mode="off",
                     endpoint_options={"concurrency": workers})
        pipe = Pipeline(spec, lm, params=params)
        scores[workers] = evaluate(pipe, examples, metric("exact_match"), LanguageLoss(lm))
        lm.close()
    assert scores[1] == scores[3] and len(scores[1]) == 6


def test_cli_eval_runs_against_the_endpoint(server, cache_dir):
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from localsym.cli import main; sys.exit(main())",
         "eval", str(SPORTS / "agent.yaml"), str(SPORTS / "data" / "val.jsonl"), "--metric",
         "exact_match", "--limit", "3", "--endpoint", server, "--model", "smollm2",
         "--max-tokens", "24", "--quiet"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["examples"] == 3 and 0.0 <= result["score"] <= 1.0


def test_unreachable_server_and_unknown_model_are_clear_errors(server):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(EndpointError, match="is unreachable .* after 2 tries.*Fix: start the"):
        open_lm("m", endpoint=dead, cache_mode="off", endpoint_options=FAST).generate("hi", Verdict)
    with pytest.raises(ModelNotFoundError, match=r"does not serve model 'gpt-9'; it has \['smollm2'\]"):
        open_lm("gpt-9", endpoint=server, cache_mode="off").generate("hi", Verdict)


@pytest.mark.parametrize("answer, error, message", [
    (JSONResponse(status_code=400, content={"error": "response_format is not supported"}),
     EndpointError, "supports no JSON-schema structured output"),
    (_answer("Sure! The answer is yes."), InvalidOutputError, "does not match schema Verdict"),
], ids=["no-structured-outputs", "answer-breaks-the-schema"])
def test_a_misbehaving_server_is_a_clear_error(answer, error, message):
    async def reply(body):
        return answer
    s = stand_in(reply)
    try:
        with pytest.raises(error, match=message):
            open_lm("m", endpoint=s.url, cache_mode="off").generate("hi", Verdict)
    finally:
        s.stop()


def test_timeouts_are_retried_with_backoff_then_named():
    calls = []

    async def slow_then_ok(body):
        import asyncio

        calls.append(time.monotonic())
        if len(calls) <= 2:
            await asyncio.sleep(2)
        return _answer('{"label": "yes", "reason": "ok"}')
    s = stand_in(slow_then_ok)
    try:
        opts = {"timeout": 0.5, "retries": 3, "backoff": 0.1}
        value = open_lm("m", endpoint=s.url, cache_mode="off",
                        endpoint_options=opts).generate("hi", Verdict)
        assert value.label == "yes" and len(calls) == 3  # two timeouts, then an answer
        calls.clear()
        opts = {"timeout": 0.5, "retries": 1, "backoff": 0.1}
        with pytest.raises(EndpointError, match="timed out .* 2 times.*raise models.timeout"):
            open_lm("m", endpoint=s.url, cache_mode="off",
                    endpoint_options=opts).generate("hi", Verdict)
    finally:
        s.stop()
