"""Benchmark of the LM layer on the embedded model (run by hand; figures go to the issue note).

    .venv/bin/python scripts/bench_lm.py [--model NAME] [--repeats 3]

Measures, side by side in one run:
  1. schema compile, cold (vocabulary + outlines-core index) vs warm (index loaded from disk);
  2. decode tokens/s, free vs under a schema, on the same prompt: localsym's loop, and for
     reference llama-cpp-python's own chat completion and plain outlines (Generator + JSON);
  3. latency of a cache hit;
  4. wall time of a second process's first (cached) call, and whether it loaded the model.
Targets: warm compile <= 50 ms, constrained >= 0.9 x free tok/s, cache hit <= 2 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from pydantic import BaseModel, Field

from localsym.lm import CachedLM, LlamaCpp, Message, SamplingParams


class City(BaseModel):
    name: str
    country: str
    population: int
    description: str = Field(description="two sentences")


class Node(BaseModel):
    name: str
    role: str
    task: str
    inputs: list[str]
    outputs: list[str]


class Workflow(BaseModel):
    """A small nested schema, like an agent spec."""

    nodes: list[Node]
    edges: list[tuple[str, str]]


PROMPT = [Message(role="user", content="Describe a fictional city as a JSON object with the fields "
                  "name, country, population and description.")]


def bench_compile(model, cache_dir: Path) -> dict:
    out = {}
    for schema in (City, Workflow):
        cold_lm = LlamaCpp(model, cache_dir=cache_dir / "cold" / schema.__name__)
        cold_lm.llama
        t = time.perf_counter()
        cold_lm._index_for(schema)
        cold = time.perf_counter() - t
        warm_lm = LlamaCpp(model, cache_dir=cache_dir / "cold" / schema.__name__)
        warm_lm.llama
        t = time.perf_counter()
        warm_lm._index_for(schema)
        warm = time.perf_counter() - t
        assert warm_lm.indexes.loaded == 1 and warm_lm.indexes.compiled == 0
        size = sum(p.stat().st_size for p in (cache_dir / "cold" / schema.__name__ / "indexes").glob("*.index"))
        out[schema.__name__] = {"cold_s": round(cold, 3), "warm_ms": round(warm * 1000, 1),
                                "index_bytes": size}
        cold_lm.close()
        warm_lm.close()
    return out


def decode_rate(completion) -> float:
    return completion.completion_tokens / max(completion.seconds - completion.prefill_seconds, 1e-9)


def bench_decode(model, cache_dir: Path, repeats: int) -> dict:
    lm = LlamaCpp(model, cache_dir=cache_dir / "decode")
    params = SamplingParams(max_tokens=160, max_tokens_limit=160)
    lm.complete(PROMPT, City, params)  # compile + warm up
    free, constrained, ntok, whole = [], [], [], []
    for _ in range(repeats):
        f = lm.complete_text(PROMPT, params)
        c = lm.complete(PROMPT, City, params)
        free.append(decode_rate(f))
        constrained.append(decode_rate(c))
        whole.append(c.completion_tokens / c.seconds)
        ntok.append((f.completion_tokens, c.completion_tokens))
    out = {"localsym_free_tok_s": round(statistics.median(free), 1),
           "localsym_schema_tok_s": round(statistics.median(constrained), 1),
           "localsym_schema_tok_s_incl_prompt": round(statistics.median(whole), 1),
           "tokens_free_schema": ntok[0]}
    out["ratio_schema_over_free"] = round(out["localsym_schema_tok_s"] / out["localsym_free_tok_s"], 3)

    # references: llama-cpp-python's own sampler, free; plain outlines 1.x with the same model
    llm = lm.llama
    msgs = [m.model_dump() for m in PROMPT]
    rates = []
    for _ in range(repeats):
        llm.reset()
        t = time.perf_counter()
        r = llm.create_chat_completion(msgs, max_tokens=160, temperature=0.0)
        rates.append(r["usage"]["completion_tokens"] / (time.perf_counter() - t))
    out["llama_cpp_python_free_tok_s_incl_prompt"] = round(statistics.median(rates), 1)
    try:
        import outlines

        gen = outlines.Generator(outlines.from_llamacpp(llm), City)
        gen(outlines.inputs.Chat(msgs), max_tokens=160)  # compile outside the timing
        rates = []
        for _ in range(repeats):
            t = time.perf_counter()
            text = gen(outlines.inputs.Chat(msgs), max_tokens=160, temperature=0.0)
            n = len(llm.tokenize(text.encode(), add_bos=False))
            rates.append(n / (time.perf_counter() - t))
        out["plain_outlines_schema_tok_s_incl_prompt"] = round(statistics.median(rates), 1)
    except Exception as err:  # a reference only; report why it is missing
        out["plain_outlines_schema_tok_s_incl_prompt"] = f"failed: {err}"
    lm.close()
    return out


def bench_cache(model, cache_dir: Path) -> dict:
    lm = CachedLM(LlamaCpp(model, cache_dir=cache_dir / "hit"), cache_dir=cache_dir / "hit")
    params = SamplingParams(max_tokens=160)
    lm.complete(PROMPT, City, params)
    times = []
    for _ in range(300):
        t = time.perf_counter()
        lm.complete(PROMPT, City, params)
        times.append(time.perf_counter() - t)
    lm.close()
    code = textwrap.dedent(f"""
        import json, sys, time
        t0 = time.perf_counter()
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from bench_lm import City, PROMPT
        from localsym.lm import open_lm, llamacpp, SamplingParams
        lm = open_lm({model!r}, cache_dir={str(cache_dir / "hit")!r})
        t1 = time.perf_counter()
        c = lm.complete(PROMPT, City, SamplingParams(max_tokens=160))
        t2 = time.perf_counter()
        print(json.dumps({{"import_and_open_s": t1 - t0, "first_call_s": t2 - t1,
                          "cached": c.cached, "model_loads": llamacpp.LOADS,
                          "llama_cpp_imported": "llama_cpp" in sys.modules}}))
    """)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    second = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"hit_median_ms": round(statistics.median(times) * 1000, 3),
            "hit_p95_ms": round(sorted(times)[int(0.95 * len(times))] * 1000, 3),
            "second_process_wall_s": round(wall, 3),
            "second_process_first_call_ms": round(second["first_call_s"] * 1000, 2),
            "second_process_import_and_open_s": round(second["import_and_open_s"], 3),
            "second_process_cached": second["cached"],
            "second_process_model_loads": second["model_loads"],
            "second_process_imported_llama_cpp": second["llama_cpp_imported"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        report = {"compile": bench_compile(args.model, d),
                  "decode": bench_decode(args.model, d, args.repeats),
                  "cache": bench_cache(args.model, d)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
