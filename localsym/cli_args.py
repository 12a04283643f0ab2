"""The ``localsym`` command's arguments: one parser, the sub-commands and their options, and the
reading of their values (an INPUT, the agent's sampling); the commands themselves are in
``cli.py``. A wrong argument is one line, cause and fix, exit 2."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from localsym.errors import ConfigError
from localsym.lm.base import AGENT_PARAMS, SamplingParams
from localsym.lm.cache import MODES


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1 (a count, a limit, a token budget)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number (give 1 or more)")
    return value


def _model_args(p: argparse.ArgumentParser, cache_mode: bool = False) -> None:
    """The options of a command that calls a model: which model, where, and its cache."""
    p.add_argument("--model", default=None,
                   help="registry name, GGUF path or file name (default: embedded)")
    p.add_argument("--endpoint", help="an OpenAI-compatible server's base URL (.../v1); "
                                      "--model names its model")
    p.add_argument("--max-tokens", type=positive, default=None,
                   help="answer tokens of a call (default 128, as a config's sampling)")
    p.add_argument("--cache-dir", default=None)
    if cache_mode:
        p.add_argument("--cache-mode", choices=MODES, default=None)


def _tool_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tool", action="append", default=[], metavar="REF",
                   help="a tool of your own, FILE.py:FUNCTION or MODULE:FUNCTION (repeatable)")


def _agent_commands(sub) -> None:
    """generate, run, eval: calling a model or an agent."""
    gen = sub.add_parser("generate", help="one schema-forced call on a local model")
    gen.add_argument("prompt")
    gen.add_argument("--schema", help="package.module:PydanticClass (default: {answer: str})")
    gen.add_argument("--system", help="a system message")
    gen.add_argument("--temperature", type=float, default=0.0)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--n-ctx", type=int, default=None)
    _model_args(gen, cache_mode=True)
    gen.add_argument("--quiet", action="store_true")

    ev = sub.add_parser("eval", help="score an agent spec on a dataset")
    ev.add_argument("agent", help="agent spec (YAML/JSON)")
    ev.add_argument("dataset", help="JSONL examples (localsym's shape)")
    ev.add_argument("--metric", help="exact_match, numeric_match, humaneval, or your own: "
                    "FILE.py:FUNCTION or MODULE:FUNCTION (default: the language loss's judge)")
    _tool_arg(ev)
    ev.add_argument("--limit", type=positive, default=None,
                    help="score only the first N examples")
    ev.add_argument("--concurrency", type=positive, default=4,
                    help="requests in flight at once to an endpoint")
    _model_args(ev)
    ev.add_argument("--quiet", action="store_true")

    run = sub.add_parser("run", help="run an agent once and print its outputs")
    run.add_argument("agent", help="agent spec (YAML/JSON)")
    run.add_argument("input", nargs="+", help="JSON object, or field=value (repeatable)")
    run.add_argument("--trace", action="store_true", help="print the whole trajectory")
    _tool_arg(run)
    _model_args(run)


def _serve_command(sub) -> None:
    srv = sub.add_parser("serve", help="serve a self-evolving agent over HTTP (localhost)")
    srv.add_argument("agent", help="agent spec, or a deploy config (see localsym.config."
                                   "DeployConfig)")
    srv.add_argument("--dir", help="deployment directory: agent.db, rounds/ "
                                   "(default: deployments/NAME); reused on restart")
    srv.add_argument("--host", default="127.0.0.1",
                     help="address to bind; anything but loopback needs a token")
    srv.add_argument("--token", default=None, help="require Authorization: Bearer TOKEN on "
                     "every endpoint but /health (default: $LOCALSYM_TOKEN)")
    srv.add_argument("--port", type=int, default=8765)
    srv.add_argument("--model", default=None, help="the agent's model (overrides the config)")
    srv.add_argument("--every", type=int, default=None,
                     help="start a round after N new feedbacks (0: only on demand)")


class _Parser(argparse.ArgumentParser):
    """argparse, with a wrong argument as one line (cause and fix) and exit status 2, like every
    other error a user can cause."""

    def error(self, message: str):  # type: ignore[override]
        print(f"localsym: error: {message} Fix: see `{self.prog} --help`", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="localsym", description="localsym: train LLM agents offline (agent "
                     "symbolic learning on local GGUF models)")
    sub = parser.add_subparsers(dest="command", required=True)
    _agent_commands(sub)

    train = sub.add_parser("train", help="train an agent from a config file")
    train.add_argument("config", nargs="?", help="YAML/JSON run config (examples/*/config.yaml)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    train.add_argument("--run-dir", help="where the run goes (default: the config's, or runs/NAME)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--estimate", action="store_true",
                       help="print the estimated LLM calls, tokens and time, and exit")

    rep = sub.add_parser("report", help="write the HTML report of a run")
    rep.add_argument("run_dir")

    track = sub.add_parser("track", help="log a run to MLflow (pip install 'localsym[mlflow]')")
    track.add_argument("run_dir")
    track.add_argument("--mlflow", metavar="URI_OR_DIR",
                       help="tracking URI or file-store directory (default: mlruns beside the "
                            "run directory)")
    track.add_argument("--experiment", default="localsym")

    mod = sub.add_parser("models", help="list or install models")
    mod.add_argument("action", nargs="?", choices=["list", "install"], default="list")
    mod.add_argument("name", nargs="?")

    cache = sub.add_parser("cache", help="disk cache statistics or clearing")
    cache.add_argument("action", choices=["stats", "clear"])
    cache.add_argument("--cache-dir", default=None)

    init = sub.add_parser("init", help="write a task of your own to start from (agent, config, "
                                       "data, metric, tool)")
    init.add_argument("dir", help="a new directory")
    init.add_argument("--force", action="store_true", help="write into a non-empty directory")
    _serve_command(sub)
    return parser


MAX_DEPTH = 32  # nesting of a JSON input


def _depth(value, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def parse_input(text: str) -> dict:
    """``--input``: a JSON object of the agent's inputs, or ``field=value``."""
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as err:
            raise ConfigError(f"INPUT is not valid JSON: {str(err)[:200]}",
                              "quote it: '{\"question\": \"...\"}'") from None
        if not isinstance(value, dict) or _depth(value) > MAX_DEPTH:
            what = f"nested over {MAX_DEPTH} levels deep" if isinstance(value, dict) else \
                "not a JSON object"
            raise ConfigError(f"INPUT is {what}",
                              "give an object of the agent's inputs: '{\"question\": \"...\"}'")
        return value
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"INPUT {text!r} is neither JSON nor field=value",
                          "give '{\"field\": \"value\"}' or field=value")
    return {key.strip(): value}


def agent_params(args) -> SamplingParams:
    """The agent's sampling: a config's default, or ``--max-tokens`` with the same headroom
    (a call that reaches it may go on to twice as many tokens to close its answer)."""
    if args.max_tokens is None:
        return AGENT_PARAMS
    return SamplingParams(max_tokens=args.max_tokens, max_tokens_limit=2 * args.max_tokens)


def agent_tools(args, spec):
    """The tools of ``localsym run`` and ``eval``: the built-in ones, those ``--tool`` names,
    and, for an agent that declares a tool neither gives, the ``tools:`` of a ``config.yaml``
    beside the agent's file (as ``localsym init`` and the examples keep them); a declared tool
    still missing is one clear error naming the flag."""
    from localsym.agent import default_tools  # noqa: PLC0415 (the agent loads only for a verb that runs one)
    from localsym.agent.tools import add_references  # noqa: PLC0415 (likewise)

    tools = add_references(default_tools(), args.tool, Path.cwd())
    missing = [t.name for t in spec.tools if t.name not in tools.names()]
    config = Path(args.agent).resolve().parent / "config.yaml"
    if missing and config.is_file():
        try:
            refs = (yaml.safe_load(config.read_text("utf-8")) or {}).get("tools") or []
        except (yaml.YAMLError, OSError, AttributeError):
            refs = []
        if isinstance(refs, list):
            add_references(tools, refs, config.parent)
        missing = [t for t in missing if t not in tools.names()]
    if missing:
        raise ConfigError(f"the agent declares the tool(s) {missing}, which no --tool names",
                          f"pass --tool tools.py:{missing[0]} (a file beside you, and the "
                          "function's name), or keep a config.yaml naming its tools: beside "
                          "the agent")
    return tools
