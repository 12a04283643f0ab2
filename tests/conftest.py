"""Shared fixtures. Tests run the real stack on the embedded model; a scripted LM serves only the
tests of pure logic (cache keys, concurrency, validation)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Callable, Literal

import pytest
from pydantic import BaseModel, Field

from localsym.lm.base import LM, Completion, Message, SamplingParams


class Verdict(BaseModel):
    """A small schema the embedded model fills quickly."""

    label: Literal["yes", "no"]
    reason: str = Field(description="a few words")


class ScriptedLM(LM):
    """An LM whose answers come from a Python function: for pure-logic tests only."""

    def __init__(self, answer: Callable[[list[Message], SamplingParams], str], name="scripted"):
        self.answer, self.name, self.calls = answer, name, 0

    def identity(self) -> dict:
        return {"backend": "scripted", "name": self.name}

    def complete(self, messages, schema, params) -> Completion:
        self.calls += 1
        return Completion(text=self.answer(messages, params))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache directory (calls, indexes, file hashes): nothing touches the
    user's cache and no test sees another's entries. The compiled-index and file-hash stores are
    seeded from one shared directory so each test does not recompile the same schema."""
    d = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("LOCALSYM_CACHE_DIR", str(d))
    monkeypatch.delenv("LOCALSYM_CACHE_MODE", raising=False)
    monkeypatch.delenv("LOCALSYM_MODEL", raising=False)
    return d


@pytest.fixture
def cache_dir(_isolated_cache):
    return _isolated_cache


def run_events(run_dir, kind: str | None = None) -> list[dict]:
    """A run's events as its run directory reads them (typed, each as the data it was written
    from), all of them or those of one ``kind`` (start, step, stopped)."""
    from localsym.learn.checkpoint import RunDirectory

    return [e.model_dump(mode="json") for e in RunDirectory(run_dir).events()
            if kind is None or e.event == kind]


def listed(found) -> dict:
    """A proposer's children by the text of their edits (``; ``-separated): text -> spec."""
    return {c.text: c.spec for c in found}


def run_python(code: str, env: dict | None = None, timeout: float = 300) -> dict:
    """Run ``code`` in a fresh interpreter; it must print one JSON object as its last line."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


class RoutedLM(LM):
    """A scripted LM that answers by schema name: {schema_name: messages -> dict}. Records every
    call as (schema name, messages). For pure-logic tests only."""

    def __init__(self, routes: dict[str, Callable[[list[Message]], dict]]):
        self.routes, self.calls = routes, []

    def identity(self) -> dict:
        return {"backend": "routed"}

    def complete(self, messages, schema, params) -> Completion:
        name = next((k for k in self.routes if schema.__name__.endswith(k)), None)
        if name is None:
            raise AssertionError(f"no scripted answer for schema {schema.__name__}")
        self.calls.append((schema.__name__, [m.model_dump() for m in messages]))
        return Completion(text=json.dumps(self.routes[name]([m.model_dump() for m in messages])))


def wait_until(predicate: Callable[[], bool], seconds: float, every: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds or ``seconds`` pass (a deadline, not a fixed sleep);
    whether it held."""
    import time

    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() >= deadline:
            return predicate()
        time.sleep(every)
    return True


def stub_evolving_agent(tmp_path, source_dir):
    """A deployment of ``source_dir``'s agent.yaml on the stub model (no model file needed),
    in ``tmp_path/dep``: for the service's tests. The caller closes it."""
    from localsym.config import load_deploy_config
    from localsym.deploy.evolve import EvolvingAgent

    agent = tmp_path / "agent.yaml"
    agent.write_text((source_dir / "agent.yaml").read_text())
    config, base = load_deploy_config(agent)
    config = config.model_copy(update={"models": config.models.model_copy(
        update={"agent": "stub"})})
    return EvolvingAgent(tmp_path / "dep", config, base, log=lambda _: None)


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc=None, seconds: float = 60) -> None:
    """Wait until ``url`` answers (any status below 500); fail early if ``proc`` died."""
    import time

    import httpx

    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited: {proc.stdout.read()[-3000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {seconds:.0f}s")
