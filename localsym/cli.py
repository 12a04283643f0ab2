"""The ``localsym`` command.

    localsym train CONFIG [--resume RUN_DIR]     train an agent (examples/*/config.yaml)
    localsym eval AGENT DATASET [--metric M]     score an agent spec on a JSONL dataset
    localsym run AGENT INPUT [--trace]           run an agent once (INPUT: JSON or key=value)
    localsym report RUN_DIR                      write RUN_DIR/report.html
    localsym track RUN_DIR [--mlflow URI]        log a run to MLflow (the mlflow extra)
    localsym generate PROMPT [--schema mod:Cls]  one schema-forced call (default schema: answer)
    localsym models [list] | install [NAME]      the model registry and the GGUF files found
    localsym cache stats|clear                   the disk cache
    localsym serve AGENT|CONFIG [--dir D]        a self-evolving agent over HTTP on localhost
    localsym init DIR                            write a task of your own to start from

Errors a user can cause print one line (cause and fix) and exit with status 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel, Field

from localsym.cli_args import agent_tools, agent_params, build_parser, parse_input
from localsym.errors import ConfigError, LocalsymError, ModelCorruptError


class Answer(BaseModel):
    """The default schema of ``localsym generate``."""
    answer: str = Field(description="the answer, in a few words")


def _load_schema(spec: str | None) -> type[BaseModel]:
    """``--schema``: a pydantic class by reference (``package.module:Class``, ``file.py:Class``)."""
    if not spec:
        return Answer
    from localsym import refs

    schema = refs.resolve(spec, ".", "schema", "mypkg.schemas:Answer")
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise ConfigError(f"{spec} is not a pydantic model class", "point at a BaseModel subclass")
    return schema


def cmd_generate(args) -> int:
    from localsym.lm import open_lm

    schema = _load_schema(args.schema)
    lm = open_lm(args.model, cache_dir=args.cache_dir, cache_mode=args.cache_mode,
                 endpoint=args.endpoint, **({"n_ctx": args.n_ctx} if not args.endpoint else {}))
    try:
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + \
            [{"role": "user", "content": args.prompt}]
        value, completion = lm.call(messages, schema, max_tokens=agent_params(args).max_tokens,
                                    seed=args.seed, temperature=args.temperature)
        print(value.model_dump_json(indent=2))
        if not args.quiet:
            source = "cache hit" if completion.cached else "generated"
            print(f"[{lm.describe()}: {source}, {completion.prompt_tokens} prompt + "
                  f"{completion.completion_tokens} answer tokens, {completion.seconds:.2f}s; "
                  f"cache {lm.directory}]", file=sys.stderr)
    finally:
        lm.close()
    return 0


def _estimate(args) -> int:
    """`localsym train CONFIG --estimate`: the run's calls, tokens and time, from a rehearsal of
    it on a stand-in model (nothing of the run written, no model call made but the speed check)."""
    from localsym.config import load_config
    from localsym.runner import Run

    if not args.config:
        raise ConfigError("--estimate needs a config", "localsym train CONFIG --estimate")
    config, base = load_config(args.config)
    if config.dataset.generate is not None:
        raise ConfigError("--estimate cannot count a dataset the model has not written yet "
                          "(dataset: generate)", "run it once without --estimate (the "
                          "dataset is cached), or write the dataset to a file")
    run = Run(config, base, run_dir=args.run_dir, quiet=True)  # nothing is written
    try:
        est = run.estimate()
    finally:
        run.close()
    print(est.line())
    print(json.dumps(est.model_dump(), indent=2))
    return 0


def cmd_train(args) -> int:
    from localsym.runner import open_run

    if args.estimate:
        return _estimate(args)
    run = open_run(args.config, args.resume, args.run_dir, args.quiet)
    tracking = run.config.tracking
    if tracking is not None:
        from localsym.tracking import check_installed

        try:
            check_installed()  # before training: the fix costs nothing yet
        except LocalsymError:
            run.close()
            raise
    try:
        summary = run.train(resume=args.resume is not None)
    except KeyboardInterrupt:
        print(f"localsym: interrupted; every finished step is checkpointed and every LLM call "
              f"cached: continue with  localsym train --resume {run.run_dir}", file=sys.stderr)
        return 130
    finally:
        run.close()
    test = (f"; test {summary.test_before:.3f} -> {summary.test_after:.3f} "
            f"({summary.test_size} examples)"
            if summary.test_size and summary.test_after is not None else "")
    print(f"{summary.name}: validation {summary.val_before:.3f} -> "
          f"{summary.val_after:.3f}{test}")
    print(f"{summary.steps} steps: {summary.accepted} accepted, {summary.rolled_back} "
          f"rolled back; LLM calls: {summary.calls_made} made, {summary.calls_cached} from the "
          f"cache; {summary.wall_seconds:.0f}s")
    if summary.calls_per_example is not None:
        start = (f" (untrained: {summary.start_calls:g} calls)"
                 if summary.start_calls is not None else "")
        print(f"the agent costs {summary.calls_per_example:g} model calls and "
              f"{summary.tokens_per_example or 0:g} tokens per example{start}")
    if summary.ended:
        print(f"stopped early: {summary.ended}")
    print(f"run directory: {run.run_dir} (localsym report {run.run_dir})")
    if tracking is not None:
        _track(run, tracking)
    if summary.stopped:
        print(f"localsym: stopped early: {summary.stopped}; to go on, raise the budget in "
              f"the config and run  localsym train CONFIG --resume {run.run_dir}",
              file=sys.stderr)
        return 3
    return 0


def _track(run, tracking) -> None:
    """Log the finished run to MLflow (a failure there loses nothing: the run is on disk)."""
    from localsym.tracking import log_run, store_uri

    uri = store_uri(tracking.mlflow, run.base)
    try:
        run_id = log_run(run.run_dir, uri, tracking.experiment)
    except Exception as err:  # noqa: BLE001 (the run is saved; say how to log it again)
        raise ConfigError(f"the run finished and is saved in {run.run_dir}, but logging it to "
                          f"MLflow at {uri} failed ({type(err).__name__}: {err})",
                          f"fix the tracking store, then  localsym track {run.run_dir} "
                          f"--mlflow {uri}") from None
    print(f"logged to MLflow: run {run_id} in experiment {tracking.experiment!r} at {uri}")


def cmd_run(args) -> int:
    from localsym.agent import Pipeline, PipelineSpec
    from localsym.lm import open_lm

    spec = PipelineSpec.load(args.agent)
    inputs = {}
    for item in args.input:
        inputs.update(parse_input(item))
    tools = agent_tools(args, spec)
    lm = open_lm(args.model, cache_dir=args.cache_dir, endpoint=args.endpoint)
    try:
        traj = Pipeline(spec, lm, tools, agent_params(args)).forward(inputs)
    finally:
        lm.close()
    if traj.error and "ContextOverflowError" in traj.error and not args.trace:
        raise ConfigError(traj.error.split("ContextOverflowError: ", 1)[-1].split(" Fix: ")[0],
                          traj.error.split(" Fix: ", 1)[1] if " Fix: " in traj.error else
                          "shorten the input, lower --max-tokens, or raise n_ctx")
    print(traj.model_dump_json(indent=2) if args.trace else json.dumps(traj.outputs, indent=2))
    if traj.error:
        print(f"localsym: the run stopped early: {traj.error}", file=sys.stderr)
        return 1
    return 0


def cmd_eval(args) -> int:
    import numpy as np

    from localsym.agent import Pipeline, PipelineSpec
    from localsym.data import load_table
    from localsym.metrics import metric
    from localsym.learn import LanguageLoss
    from localsym.learn.evaluate import evaluate, progress_bar
    from localsym.lm import open_lm
    from localsym.rundata import check_examples

    spec = PipelineSpec.load(args.agent)
    examples = load_table(args.dataset)[: args.limit]
    score_fn = metric(args.metric, Path.cwd()) if args.metric else None
    check_examples({"dataset": examples}, spec, args.metric)  # what train refuses, eval does
    tools = agent_tools(args, spec)
    lm = open_lm(args.model, cache_dir=args.cache_dir, endpoint=args.endpoint,
                 endpoint_options={"concurrency": args.concurrency})
    try:
        pipe = Pipeline(spec, lm, tools, agent_params(args))
        scores = evaluate(pipe, examples, score_fn, LanguageLoss(lm, spec.description),
                          progress_bar(None, "eval", not args.quiet, len(examples)))
    finally:
        lm.close()
    print(json.dumps({"agent": str(args.agent), "dataset": str(args.dataset),
                      "examples": len(scores),
                      "score": round(float(np.mean(scores)), 4) if scores else None,
                      "scored_by": args.metric or "language loss (judge)"}, indent=2))
    return 0


def cmd_report(args) -> int:
    from localsym.report import write_report

    print(f"wrote {write_report(args.run_dir)}")
    return 0


def cmd_track(args) -> int:
    from localsym.tracking import default_uri, log_run, store_uri

    uri = store_uri(args.mlflow, Path.cwd()) if args.mlflow else default_uri(Path(args.run_dir))
    run_id = log_run(args.run_dir, uri, args.experiment)
    print(f"logged {args.run_dir} to MLflow: run {run_id} in experiment {args.experiment!r} "
          f"at {uri}")
    return 0


def cmd_models(args) -> int:
    from localsym.lm import models

    if args.action == "install":
        name = args.name or models.default_model_name()
        known = models.registry().get("models", {})
        if name not in known:  # only registry names: never a path
            raise ConfigError(f"unknown model {name!r}: install takes a registry name",
                              f"one of {', '.join(known)}; a GGUF file of your own needs no "
                              "install (put it in models/ or pass its path)")
        ref = models.resolve(name)
        if ref.path is not None and ref.path.is_file():
            print(f"{name}: already installed at {models.verified_path(ref)}")
        else:
            print(f"{name}: installed at {models.install(name)}")
        return 0
    for row in models.listing():
        state = "not installed"
        if row["present"]:
            ref = models.resolve(row["path"] if not row["registry"] else row["name"])
            try:
                path = models.verified_path(ref)  # sha256 once per file, then remembered
                state = "verified" if ref.sha256 else f"sha256 {models.file_sha256(path)[:12]}"
            except ModelCorruptError:
                state = "CORRUPT (sha256)"
        print(f"{row['name']:28} {state:20} {row['path'] or row['description']}")
    return 0


def cmd_cache(args) -> int:
    from localsym.lm.store import JsonStore, default_cache_dir

    directory = default_cache_dir(args.cache_dir) / "calls"
    if args.action == "clear":
        indexes = default_cache_dir(args.cache_dir) / "indexes"
        removed = 0
        for path in indexes.glob("*.index") if indexes.is_dir() else ():
            path.unlink()  # compiled schema indexes: recompiled when next needed
            removed += 1
        if removed:
            print(f"removed {removed} compiled schema indexes from {indexes}")
    if args.action == "clear" and not JsonStore.healthy(directory):
        JsonStore.rebuild(directory)  # a corrupt database cannot be cleared entry by entry
        print(f"the cache at {directory} was corrupt: rebuilt it empty")
        return 0
    store = JsonStore(directory)
    try:
        if args.action == "clear":
            print(f"removed {store.clear()} entries from {store.directory}")
        else:
            counts = store.counts()
            print(json.dumps({"directory": str(store.directory),
                              "entries": len(store) - len(counts), "bytes": store.volume(),
                              **{k: counts.get(k, 0) for k in ("hits", "misses", "stores")}},
                             indent=2))
    finally:
        store.close()
    return 0


def cmd_serve(args) -> int:
    from localsym.deploy.serve import serve_command

    return serve_command(args)


def cmd_init(args) -> int:
    """Write a task of your own to start from: agent spec, config, data, metric and tool."""
    from localsym.api import init_task

    written = init_task(args.dir, force=args.force)
    target = Path(args.dir)
    print(f"wrote {', '.join(written)} to {target}\n"
          f"train it:  localsym train {target / 'config.yaml'}\n"
          f"then edit agent.yaml (the agent), metrics.py (how it is scored), tools.py (what it "
          f"may call) and data/*.csv (your examples)")
    return 0


COMMANDS = {"generate": cmd_generate, "eval": cmd_eval, "run": cmd_run, "serve": cmd_serve,
            "train": cmd_train, "report": cmd_report, "track": cmd_track,
            "models": cmd_models, "cache": cmd_cache,
            "init": cmd_init}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import logging

    # warnings (busy cores, overlapping splits, a failing metric) as one marked line each
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("localsym: warning: %(message)s"))
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    try:
        return COMMANDS[args.command](args)
    except LocalsymError as err:
        print(f"localsym: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("localsym: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (``| head``): nothing is wrong with a path
        _quiet_stdout()
        return 141
    except OSError as err:  # a path the user named: read-only, missing, full, not allowed
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        print(f"localsym: error: {err.strerror or err}{where} Fix: check that the path exists "
              "and is writable (a read-only file system, a full disk, permissions)",
              file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - one line, never a traceback; debug shows it
        import os

        if os.environ.get("LOCALSYM_DEBUG"):
            raise
        print(f"localsym: internal error: {type(err).__name__}: {str(err)[:300]} (a bug in "
              "localsym: rerun with LOCALSYM_DEBUG=1 for the traceback, and report it)",
              file=sys.stderr)
        return 1


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush on exit does not fail
    again on the closed pipe."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
