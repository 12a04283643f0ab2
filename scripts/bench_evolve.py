"""The self-evolving agent on a stream: does a deployed agent learn from its own use?

    .venv/bin/python scripts/bench_evolve.py [--config examples/arithmetic/deploy.yaml]
        [--requests 200] [--seed 0] [--window 25] [--out evolve.jsonl] [--plot evolve.png]

Feeds the deployment (``EvolvingAgent``, what ``localsym serve`` runs) a stream of 3-digit
multiplication questions generated from ``--seed``; after each answer it sends the correction
(the expected answer), as a user of the service would. Rounds start as the deploy config says
(``evolve.every``). The stream waits for a round to finish before its next request, so the
result does not depend on how fast this machine trains (in a real deployment the old version
keeps answering while a round runs). Prints, per request, the live version and whether it was
right; then the rolling accuracy with the version switches marked, each round's decision, the
accuracy of the last 50 answers, the LLM calls made and the wall time. With matplotlib installed
(``pip install -e .[bench]``) ``--plot`` also draws the rolling accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def stream(n: int, seed: int) -> list[tuple[dict, dict]]:
    rng = np.random.default_rng([seed, 2406])
    pairs = rng.integers(100, 1000, size=(n, 2))
    return [({"question": f"What is {a} times {b}?"}, {"answer": int(a) * int(b)})
            for a, b in pairs]


def rolling(flags: list[bool], window: int) -> list[float]:
    return [float(np.mean(flags[max(0, i + 1 - window):i + 1])) for i in range(len(flags))]


def text_plot(acc: list[float], versions: list[int], width: int = 50) -> str:
    """Rolling accuracy as rows of bars, one row per 10 requests; a version switch is marked."""
    lines = []
    for start in range(0, len(acc), 10):
        end = min(start + 10, len(acc))
        switch = [i + 1 for i in range(start, end) if i and versions[i] != versions[i - 1]]
        bar = "#" * round(acc[end - 1] * width)
        mark = f"  <- version {versions[switch[0] - 1]} live from request {switch[0]}" \
            if switch else ""
        lines.append(f"{end:4d} | {bar:<{width}} {acc[end - 1]:.2f}{mark}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "examples/arithmetic/deploy.yaml"))
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--window", type=int, default=25, help="of the rolling accuracy")
    ap.add_argument("--dir", default=None, help="deployment directory (default: a fresh one)")
    ap.add_argument("--out", default=None, help="per-request records (JSON lines)")
    ap.add_argument("--plot", default=None, help="a PNG of the rolling accuracy (matplotlib)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="localsym-evolve-"))
    os.environ.setdefault("LOCALSYM_CACHE_DIR", str(work / "cache"))

    from localsym.config import load_deploy_config
    from localsym.metrics import numeric_match
    from localsym.deploy.evolve import EvolvingAgent

    config, base = load_deploy_config(args.config)
    agent = EvolvingAgent(Path(args.dir or work / "deployment"), config, base,
                          log=lambda text: print(f"  {text}", flush=True))
    records, started = [], time.perf_counter()
    try:
        for i, (inputs, expected) in enumerate(stream(args.requests, args.seed), 1):
            answer = agent.run(inputs)
            right = bool(answer["ok"] and numeric_match(answer["outputs"], expected) >= 1.0)
            sent = agent.feedback(answer["id"], expected=expected)
            records.append({"request": i, "version": answer["version"], "right": right,
                            "outputs": answer["outputs"], "expected": expected,
                            "round": sent["round"]})
            print(f"{i:4d} v{answer['version']} {'right' if right else 'wrong'} "
                  f"{json.dumps(answer['outputs'])} (expected {expected['answer']})", flush=True)
            if sent["round"]:
                agent.wait()  # see the module doc: the stream waits for the round
        wall = time.perf_counter() - started
        rounds = agent.rounds()
        lm = agent.agent_lm
        calls = {"made": lm.misses, "cached": lm.hits}
    finally:
        agent.close()
    flags = [r["right"] for r in records]
    versions = [r["version"] for r in records]
    acc = rolling(flags, args.window)
    if args.out:
        Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in records))
    print(f"\nrolling accuracy (last {args.window} requests), after every 10th request:")
    print(text_plot(acc, versions))
    print("\n| round | trigger | train / held out | live -> candidate (held out) | decision | "
          "seconds |\n| --- | --- | --- | --- | --- | --- |")
    for r in rounds:
        score = (f"{r['val_live']:.3f} -> {r['val_candidate']:.3f}"
                 if r["val_candidate"] is not None else "-")
        print(f"| {r['id']} | {r['trigger']} | {r['train_size']} / {r['val_size']} | {score} | "
              f"{r['decision']} (version {r['candidate'] or '-'}) | "
              f"{(r['finished'] or r['started']) - r['started']:.0f} |")
    last = flags[-50:]
    print(f"\nfirst 50 answers right: {sum(flags[:50])}/{len(flags[:50])}; "
          f"last 50 right: {sum(last)}/{len(last)} = {np.mean(last):.2f}; "
          f"versions live: {sorted(set(versions))}; LLM calls made {calls['made']} "
          f"(cached {calls['cached']}); wall {wall:.0f}s")
    if args.plot:
        _plot(acc, versions, args.window, Path(args.plot))
    print(f"last50: {np.mean(last):.2f}")
    return 0


def _plot(acc: list[float], versions: list[int], window: int, path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no plot: matplotlib is not installed (pip install -e .[bench])", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.plot(range(1, len(acc) + 1), acc, color="tab:blue",
            label=f"rolling accuracy ({window} requests)")
    for i in range(1, len(versions)):
        if versions[i] != versions[i - 1]:
            ax.axvline(i + 1, color="tab:red", linestyle="--")
            ax.text(i + 1, 0.05, f" v{versions[i]}", color="tab:red")
    ax.set_xlabel("request")
    ax.set_ylabel("answers right")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


if __name__ == "__main__":
    sys.exit(main())
