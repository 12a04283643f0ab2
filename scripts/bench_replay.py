"""Replay a recorded run's model calls through the in-process backend under the decoding shipped
before issue 24 (v1: a prompt cut in 64-token chunks from position 0, every answer token decoded
on its own) and the new one (v2: a prompt cut at its messages, so a shared prefix of messages is
reused whole; the text the schema forces appended in one evaluation), in one process.

    .venv/bin/python scripts/bench_replay.py CACHE_DIR [--limit N] [--batch 8] [--model NAME]
        [--n-gpu-layers -1]

CACHE_DIR is a run's cache directory (``LOCALSYM_CACHE_DIR`` of e.g. the Quick start); its
schema-forced calls to the model are replayed in the order they were made, ``--batch`` at a time
(as the run batched them), with the cache off. For each scheme it prints the prompt tokens
submitted and evaluated, the answer tokens and the forward passes spent on them, and the wall
time; then the ratios, the last line ``wall ratio: X`` (v2 / v1). Benchmark alone.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path

from pydantic import BaseModel

from localsym.lm.base import Call, Message, SamplingParams


def replayed_schema(js: dict) -> type[BaseModel]:
    """A pydantic class whose JSON schema is ``js`` (the decoder compiles the JSON schema)."""

    class Replayed(BaseModel):
        @classmethod
        def model_json_schema(cls, *args, **kwargs):  # noqa: D102
            return js

    Replayed.__name__ = Replayed.__qualname__ = str(js.get("title", "Replayed"))
    return Replayed


def recorded_calls(cache_dir: Path, limit: int | None) -> tuple[list[Call], dict]:
    """The schema-forced calls stored in a cache directory, in the order they were made."""
    db = cache_dir / "calls" / "cache.db"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = con.execute("SELECT value, filename, mode FROM Cache WHERE raw = 1 ORDER BY rowid")
    calls, identity, schemas = [], None, {}
    for value, filename, mode in rows:
        if mode == 3 and filename:
            value = (cache_dir / "calls" / filename).read_text("utf-8")
        try:
            doc = json.loads(value)["key"]
        except (ValueError, KeyError, TypeError):
            continue
        if "schema" not in doc or doc.get("lm", {}).get("backend") != "llama.cpp":
            continue
        identity = identity or doc["lm"]
        key = json.dumps(doc["schema"], sort_keys=True)
        schema = schemas.setdefault(key, replayed_schema(doc["schema"]))
        calls.append(Call([Message(**m) for m in doc["messages"]], schema,
                          SamplingParams(**doc["params"])))
    con.close()
    return calls[:limit], identity or {}


def replay(calls: list[Call], decoding: str, batch: int, model: str | None,
           n_gpu_layers: int = 0) -> dict:
    from localsym.lm.llamacpp import LlamaCpp

    lm = LlamaCpp(model, decoding=decoding, n_gpu_layers=n_gpu_layers)
    lm.load()
    before = lm.usage()
    completion_tokens, failures = 0, 0
    start = time.perf_counter()
    for i in range(0, len(calls), batch):
        for result in lm.complete_batch(calls[i:i + batch]):
            if isinstance(result, Exception):
                failures += 1
            else:
                completion_tokens += result.completion_tokens
    wall = time.perf_counter() - start
    after = lm.usage()
    lm.close()
    delta = {k: after[k] - before.get(k, 0) for k in after}
    return {"decoding": decoding, "calls": len(calls), "failures": failures,
            "prompt_tokens": delta["prompt_tokens_submitted"],
            "prompt_evaluated": delta["prompt_tokens_evaluated"],
            "answer_tokens": completion_tokens, "answer_passes": delta["answer_passes"],
            "wall": round(wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cache_dir", type=Path)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--model", default=None)
    ap.add_argument("--n-gpu-layers", type=int, default=0, help="-1: every layer on the GPU "
                    "(a llama-cpp-python built with CUDA)")
    args = ap.parse_args()
    calls, identity = recorded_calls(args.cache_dir, args.limit)
    if not calls:
        sys.exit(f"no recorded llama.cpp calls in {args.cache_dir}")
    print(f"{len(calls)} recorded calls ({identity.get('chat_format')}, model sha256 "
          f"{str(identity.get('model_sha256'))[:12]})")
    rows = [replay(calls, scheme, args.batch, args.model, args.n_gpu_layers)
            for scheme in ("v1", "v2")]
    print("| decoding | calls | prompt tokens | evaluated | answer tokens | answer forward "
          "passes | wall |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['decoding']} | {r['calls']} | {r['prompt_tokens']} | {r['prompt_evaluated']} "
              f"({r['prompt_evaluated'] / max(r['prompt_tokens'], 1):.0%}) | {r['answer_tokens']} "
              f"| {r['answer_passes']} ({r['answer_passes'] / max(r['answer_tokens'], 1):.0%}) | "
              f"{r['wall']:.1f} s |")
    v1, v2 = rows
    print(f"evaluated prompt ratio: {v2['prompt_evaluated'] / max(v1['prompt_evaluated'], 1):.3f}")
    print(f"answer passes ratio: {v2['answer_passes'] / max(v1['answer_passes'], 1):.3f}")
    print(f"wall ratio: {v2['wall'] / max(v1['wall'], 1e-9):.3f}")


if __name__ == "__main__":
    main()
