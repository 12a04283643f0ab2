"""Tasks of shapes no shipped example has, written from scratch as a user would (a task
directory: agent.yaml, tools.py, 20 / 20 / 40 rows, config.yaml) and trained with
``localsym train`` on the stub model, so the synthesis engine alone is measured on rows it never
saw. Each generated from a seed; nothing here is tuned to one task.

- loan: a tool of four arguments, one of them a constant no row shows (payments a year);
- sentence: a tool's result inside a fixed sentence;
- order_table: a tool of eight arguments read from a small table whose parts come in any
  order and either case;
- due_date: two tools in sequence, one fed by the token shaped like a date;
- initials: no tool, two inputs joined with literal text (from 3 rows only: the rest test);
- shipping: no tool, a choice between two cases.

    python scripts/bench_shapes.py [--only NAME] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TOOLS = {
    "loan": '''
def payment(principal: float, annual_rate: float, years: int, per_year: int) -> float:
    """The payment of each period of a loan (annual_rate in percent)."""
    r = annual_rate / 100 / per_year
    n = years * per_year
    return round(principal * r / (1 - (1 + r) ** -n), 2)
''',
    "sentence": '''
ELEVATIONS = {"Denver": 1609, "Quito": 2850, "Lhasa": 3656, "Madrid": 667, "Bogota": 2640,
              "Nairobi": 1795, "Kabul": 1791, "Sanaa": 2250, "Mexico": 2240, "Thimphu": 2334,
              "Asmara": 2325, "Cusco": 3399, "Addis": 2355, "Tehran": 1189, "Ankara": 938,
              "Yerevan": 990, "Brasilia": 1172, "Canberra": 578, "Kigali": 1567, "Harare": 1490}


def elevation(city: str) -> int:
    """Elevation of a city in meters."""
    return ELEVATIONS[city]
''',
    "order_table": '''
def order_total(qty: int, price: int, tax: int, discount: int, shipping: int, boxes: int,
                box_price: int, tip: int) -> int:
    """The total of an order."""
    return qty * price + tax - discount + shipping + boxes * box_price + tip
''',
    "due_date": '''
import datetime


def add_days(date: str, days: int) -> str:
    """The date (YYYY-MM-DD) so many days after another."""
    return str(datetime.date.fromisoformat(date) + datetime.timedelta(days=days))


def weekday(date: str) -> str:
    """The weekday of a date (YYYY-MM-DD)."""
    return datetime.date.fromisoformat(date).strftime("%A")
''',
}

TOOL_NAMES = {"loan": ["payment"], "sentence": ["elevation"], "order_table": ["order_total"],
              "due_date": ["add_days", "weekday"]}


def rows(name: str, rng: random.Random, n: int) -> list[tuple[dict, str]]:
    out = []
    for _ in range(n):
        if name == "loan":
            p, rate, years = rng.choice([5000, 12000, 25000, 40000]), rng.choice([3, 4, 5, 6, 7]), \
                rng.choice([2, 3, 5, 10])
            r, k = rate / 100 / 12, years * 12
            out.append(({"question": f"A loan of {p} at {rate}% over {years} years: what is the "
                                     "monthly payment?"}, str(round(p * r / (1 - (1 + r) ** -k), 2))))
        elif name == "sentence":
            ns: dict = {}
            exec(TOOLS["sentence"], ns)
            city = rng.choice(sorted(ns["ELEVATIONS"]))
            out.append(({"question": rng.choice([f"How high is {city}?",
                                                 f"What is the elevation of {city}?"])},
                        f"{city} lies {ns['ELEVATIONS'][city]} m above sea level."))
        elif name == "order_table":
            v = {k: rng.randint(1, 20) for k in ("qty", "price", "tax", "discount", "shipping",
                                                   "boxes", "box_price", "tip")}
            parts = [f"{(k.upper() if rng.random() < 0.5 else k)}={v[k]}" for k in v]
            rng.shuffle(parts)
            total = v["qty"] * v["price"] + v["tax"] - v["discount"] + v["shipping"] + \
                v["boxes"] * v["box_price"] + v["tip"]
            out.append(({"question": "Order: " + ", ".join(parts)}, str(total)))
        elif name == "due_date":
            import datetime
            d = datetime.date(2020, 1, 1) + datetime.timedelta(days=rng.randint(0, 1500))
            days = rng.randint(1, 90)
            q = rng.choice([f"Sent on {d}, due {days} days later: which weekday?",
                            f"Due {days} days after {d}: which weekday is that?"])
            out.append(({"question": q},
                        (d + datetime.timedelta(days=days)).strftime("%A")))
        elif name == "initials":
            first = rng.choice(["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Ken",
                                "Frances", "John", "Margaret", "Niklaus", "Leslie"])
            last = rng.choice(["Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth",
                               "Thompson", "Allen", "Backus", "Hamilton", "Wirth", "Lamport"])
            out.append(({"first": first, "last": last}, f"{last.upper()}, {first[0]}."))
        elif name == "shipping":
            weight = rng.choice([rng.randint(1, 9), rng.randint(10, 99)])
            country = rng.choice(["FR", "DE", "IT", "ES", "US", "JP"])
            code = f"{country}-{weight}kg"
            out.append(({"parcel": code}, "letter" if weight < 10 else f"parcel to {country}"))
    return out


def task_dir(name: str, where: Path, seed: int) -> Path:
    rng = random.Random(f"{name}-{seed}")
    data = rows(name, rng, 80)
    n_train = 3 if name == "initials" else 20
    train, val, test = data[:n_train], data[:n_train] if name == "initials" else data[20:40], \
        data[40:]
    inputs = sorted(data[0][0])
    tools = TOOL_NAMES.get(name, [])
    if name in TOOLS:
        (where / "tools.py").write_text(TOOLS[name])
    agent = {"name": name, "inputs": [{"name": i} for i in inputs],
             "tools": [{"name": t, "description": "A tool."} for t in tools],
             "nodes": [{"name": "answer", "inputs": inputs, "prompt": {"task": "Answer."},
                        "outputs": [{"name": "answer", "type": "str"}]}]}
    (where / "data").mkdir(parents=True, exist_ok=True)
    (where / "agent.yaml").write_text(json.dumps(agent))
    for split, part in (("train", train), ("val", val), ("test", test)):
        (where / "data" / f"{split}.jsonl").write_text("".join(
            json.dumps({"id": f"{split}{i}", "inputs": ins, "expected": {"answer": out}}) + "\n"
            for i, (ins, out) in enumerate(part)))
    config = {"agent": "agent.yaml", "metric": "exact_match", "models": {"agent": "stub"},
              "tools": [f"tools.py:{t}" for t in tools],
              "dataset": {"train": "data/train.jsonl", "val": "data/val.jsonl",
                          "test": "data/test.jsonl"}}
    (where / "config.yaml").write_text(json.dumps(config))
    return where / "config.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    names = ["loan", "sentence", "order_table", "due_date", "initials", "shipping"]
    for name in [n for n in names if args.only in n]:
        with tempfile.TemporaryDirectory(prefix=f"shape-{name}-") as tmp:
            config = task_dir(name, Path(tmp), args.seed)
            done = subprocess.run([sys.executable, "-m", "localsym.cli", "train", str(config),
                                   "--quiet", "--run-dir", str(Path(tmp) / "run")],
                                  capture_output=True, text=True, timeout=1200,
                                  env={**os.environ, "LOCALSYM_CACHE_DIR": str(Path(tmp) / "c"),
                                       "PYTHONPATH": str(ROOT)})
            run = Path(tmp) / "run"
            if not (run / "summary.json").exists():
                print(f"{name:<12} failed: {done.stderr[-300:]}")
                continue
            s = json.loads((run / "summary.json").read_text())
            prog = (json.loads((run / "best_spec.json").read_text())["nodes"][0].get("program")
                    or {}).get("outputs", {}).get("answer")
            print(f"{name:<12} test {s['test_before']:.3f} -> {s['test_after']:.3f}  "
                  f"({s['wall_seconds']:.0f}s)  {prog}", flush=True)


if __name__ == "__main__":
    main()
