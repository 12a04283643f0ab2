"""``localsym serve``: a self-evolving agent behind a small HTTP API on localhost (FastAPI).

    GET  /health                 status, live version, whether a round is running
    POST /run                    {"inputs": {...}}  -> {"id", "version", "ok", "outputs", "error"}
    POST /feedback               {"id", "score"?, "expected"?, "text"?}  -> {"stored", "round"}
    GET  /samples/{id}           a stored sample with its feedback
    GET  /versions               every version (initial, accepted, rejected) and which is live
    GET  /versions/{n}           one version's spec
    POST /rollback               {"version": n}  -> the live version is n
    POST /evolve?wait=false      start a round (202), or run it and return its record (wait=true)
    GET  /rounds                 every round with its decision

Security: bound to a loopback address by default. Any other address needs a token (``--token``
or ``$LOCALSYM_TOKEN``): with one, every endpoint but ``/health`` needs ``Authorization: Bearer
<token>`` (401 without it). Request bodies over ``max_body`` bytes (1 MiB) are refused (413).
No web page can drive it: without a token, a request whose ``Host`` is not a loopback name is
refused (421: a DNS-rebinding page names its own host), a state-changing request from a foreign
``Origin`` (or marked ``Sec-Fetch-Site: cross-site``) is refused (403), and every POST must say
``content-type: application/json`` (415), which no form or simple cross-site request can send.

Handlers are plain functions, so FastAPI runs them in its thread pool: requests are answered
while a round trains (model calls take turns on the one llama.cpp context). A request a user got
wrong is a 4xx with ``{"error": "<cause> Fix: <fix>"}``.
"""

from __future__ import annotations

import hmac
import json
import ipaddress
import os
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from localsym.config import load_deploy_config
from localsym.deploy.evolve import EvolvingAgent
from localsym.deploy.store import Busy, NotFound
from localsym.errors import ConfigError, LocalsymError


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: dict[str, Any]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    score: float | None = Field(None, ge=0.0, le=1.0)
    expected: dict[str, Any] | None = None
    text: str | None = None

    @field_validator("score", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"score is a number from 0 to 1, not {json.dumps(value)[:40]} "
                             "(true, false and text are not scores)")
        return value


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: StrictInt = Field(ge=0, lt=2**63)  # true is not version 1


MAX_BODY = 1 << 20
LOOPBACK = ("127.0.0.1", "::1", "localhost")
STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")


def _host_name(value: str) -> str:
    """The host of a Host header or an Origin (``http://[::1]:8765`` -> ``::1``)."""
    try:
        host = urlsplit(value if "//" in value else f"//{value}").hostname
    except ValueError:
        return ""
    return (host or "").lower()


def _loopback_name(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond this machine without a token."""
    try:
        loopback = host in LOOPBACK or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not token:
        raise ConfigError(f"serving on {host} would expose the agent (and its retraining) to "
                          "the network with no authentication",
                          "set a token with --token or LOCALSYM_TOKEN (clients then send "
                          "Authorization: Bearer <token>), or serve on 127.0.0.1")


def create_app(agent: EvolvingAgent, token: str | None = None,
               max_body: int = MAX_BODY) -> FastAPI:
    """The service of ``agent``: its endpoints behind the guard (token, body size) and the error
    handlers that turn every user error into one JSON line with its fix."""
    app = FastAPI(title="localsym agent", version="1")
    _guard(app, token, max_body)
    _error_handlers(app)
    _routes(app, agent)
    return app


def _guard(app: FastAPI, token: str | None, max_body: int) -> None:
    def refuse(status: int, cause: str, fix: str) -> JSONResponse:
        return JSONResponse(status_code=status, content={"error": f"{cause} Fix: {fix}"})

    @app.middleware("http")
    async def guard(request: Request, call_next):
        host = _host_name(request.headers.get("host", ""))
        if not token and not _loopback_name(host):
            return refuse(421, f"Host {request.headers.get('host', '')!r} is not this machine's "
                          "loopback name (a web page rebinding its own name to 127.0.0.1?)",
                          "call http://127.0.0.1:PORT or http://localhost:PORT, or serve with "
                          "a token")
        if request.method in STATE_CHANGING:
            origin = request.headers.get("origin")
            if (origin is not None and not token and not _loopback_name(_host_name(origin))) \
                    or request.headers.get("sec-fetch-site") == "cross-site":
                return refuse(403, f"a request from another site ({origin or 'cross-site'}) may "
                              "not change this agent", "call it from this machine, not a web page")
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json":
                return refuse(415, f"a POST needs content-type application/json, not "
                              f"{kind or 'none'!r}", "send -H 'content-type: application/json' "
                              "(and a JSON body where the endpoint takes one)")
        if token and request.url.path != "/health":
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return JSONResponse(status_code=401, headers={"WWW-Authenticate": "Bearer"},
                                    content={"error": "missing or wrong token Fix: send "
                                             "Authorization: Bearer <the server's token>"})
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > max_body):
            return JSONResponse(status_code=413, content={
                "error": f"request body over {max_body} bytes Fix: send a smaller body"})
        if request.method in ("POST", "PUT", "PATCH") and size is None:
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_body:
                    return JSONResponse(status_code=413, content={
                        "error": f"request body over {max_body} bytes Fix: send a smaller body"})
            request._body = body  # read once here; the handler reads it from memory
        return await call_next(request)


def _error_handlers(app: FastAPI) -> None:
    """A bad body and a user's error answer in one line, with the fix."""

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse(status_code=422, content={
            "error": f"bad request body: {where + ': ' if where else ''}{first.get('msg')} "
                     f"Fix: see GET /docs for the request shapes"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse(status_code=exc.status_code, headers=getattr(exc, "headers", None),
                            content={"error": f"{request.method} {request.url.path}: "
                                     f"{exc.detail} Fix: see GET /docs for the endpoints"})

    @app.exception_handler(LocalsymError)
    async def user_error(request: Request, exc: LocalsymError):
        status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Busy) else \
            400 if isinstance(exc, ConfigError) else 500
        return JSONResponse(status_code=status, content={"error": str(exc)})


def _routes(app: FastAPI, agent: EvolvingAgent) -> None:
    @app.get("/health")
    def health():
        return {"status": "ok", "live_version": agent.live_version, "evolving": agent.evolving,
                "model": agent.agent_lm.describe()}

    @app.post("/run")
    def run(body: RunRequest):
        return agent.run(body.inputs)

    @app.post("/feedback")
    def feedback(body: FeedbackRequest):
        return agent.feedback(body.id, body.score, body.expected, body.text)

    @app.get("/samples/{sample_id}")
    def sample(sample_id: str):
        return agent.sample(sample_id)

    @app.get("/versions")
    def versions():
        return {"live": agent.live_version, "versions": agent.versions()}

    @app.get("/versions/{version}")
    def version(version: int):
        if not 0 <= version < 2**63:
            raise NotFound(f"no version {version}", "GET /versions lists them")
        return agent.spec(version).model_dump(mode="json")

    @app.post("/rollback")
    def rollback(body: RollbackRequest):
        return agent.rollback(body.version)

    @app.post("/evolve")
    def evolve(wait: bool = False):
        result = agent.evolve(wait=wait)
        return result if wait else JSONResponse(status_code=202, content=result)

    @app.get("/rounds")
    def rounds():
        return {"rounds": agent.rounds()}


def serve(agent: EvolvingAgent, host: str = "127.0.0.1", port: int = 8765,
          log_level: str = "warning", token: str | None = None) -> None:
    import uvicorn  # noqa: PLC0415 (the HTTP server loads only for `localsym serve`)

    check_bind(host, token)
    uvicorn.run(create_app(agent, token), host=host, port=port, log_level=log_level)


def serve_command(args) -> int:
    """``localsym serve``: every check that a user can fail (the bind address and token, the
    port, the directory) before anything is loaded; then the deployment, served until stopped."""
    token = args.token or os.environ.get("LOCALSYM_TOKEN") or None
    check_bind(args.host, token)  # before anything is loaded
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is not a TCP port", "use 1-65535 (default 8765)")
    if args.dir and Path(args.dir).exists() and not Path(args.dir).is_dir():
        raise ConfigError(f"--dir {args.dir} is a file, not a deployment directory",
                          "give a directory (it is created if missing)")
    try:  # a port in use fails here, before the banner says it is served
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((args.host, args.port))
    except OSError as err:
        raise ConfigError(f"cannot serve on {args.host}:{args.port}: {err.strerror}",
                          "pick another --port, or stop what listens there") from None
    config, base = load_deploy_config(args.agent)
    overrides: dict[str, Any] = {}
    if args.model:
        overrides["models"] = config.models.model_copy(update={"agent": args.model})
    if args.every is not None:
        overrides["evolve"] = config.evolve.model_copy(update={"every": args.every or None})
    config = config.model_copy(update=overrides)
    directory = Path(args.dir or Path("deployments") / Path(args.agent).stem)
    agent = EvolvingAgent(directory, config, base,
                          log=lambda text: print(f"localsym: {text}", file=sys.stderr,
                                                 flush=True))
    print(f"localsym: serving {config.agent} (live version {agent.live_version}) on "
          f"http://{args.host}:{args.port}  (deployment {directory}; API docs at /docs)",
          file=sys.stderr, flush=True)
    try:
        serve(agent, args.host, args.port, token=token)
    finally:
        agent.close()
    return 0
