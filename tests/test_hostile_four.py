"""Hostile input, round four (issue 39): each finding reproduced as a user meets it, through the
real CLI where the finding was seen there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEEP_TOOL = '''
def deep(text: str) -> list:
    """A list nested 100,000 deep."""
    out = []
    for _ in range(100_000):
        out = [out]
    return out
'''


def cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "localsym.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "LOCALSYM_CACHE_DIR": str(cwd / "cache")})


def deep_task(tmp_path: Path) -> Path:
    (tmp_path / "tools.py").write_text(DEEP_TOOL)
    (tmp_path / "agent.yaml").write_text(json.dumps({
        "name": "deep", "inputs": [{"name": "question"}],
        "tools": [{"name": "deep", "description": "d"}],
        "nodes": [{"name": "answer", "inputs": ["question"], "tools": ["deep"],
                   "outputs": [{"name": "answer"}],
                   "program": {"outputs": {"answer": "deep(text=question)"}}}]}))
    return tmp_path / "agent.yaml"


def test_a_tool_result_nested_too_deeply_is_a_failed_call_in_run_and_train(tmp_path):
    agent = deep_task(tmp_path)
    done = cli("run", str(agent), "question=hi", "--tool", "tools.py:deep", "--model", "stub",
               "--trace", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-1500:]
    assert "nested too deeply" in done.stdout + done.stderr
    assert "internal error" not in done.stderr
    (tmp_path / "data").mkdir()
    row = json.dumps({"id": "a", "inputs": {"question": "hi"}, "expected": {"answer": "x"}})
    for split in ("train", "val"):
        (tmp_path / "data" / f"{split}.jsonl").write_text(row + "\n")
    (tmp_path / "config.yaml").write_text(json.dumps({
        "agent": "agent.yaml", "metric": "exact_match", "models": {"agent": "stub"},
        "tools": ["tools.py:deep"], "train": {"max_steps": 1},
        "dataset": {"train": "data/train.jsonl", "val": "data/val.jsonl"}}))
    done = cli("train", "config.yaml", "--quiet", cwd=tmp_path)
    assert done.returncode == 0 and "internal error" not in done.stderr, done.stderr[-1500:]


@pytest.mark.parametrize("value, accepted", [(True, False), ("0.5", False), (0.5, True),
                                             (1, True), (None, False), ([1], False)])
def test_feedback_scores_of_every_type(tmp_path, value, accepted):
    from fastapi.testclient import TestClient

    from conftest import stub_evolving_agent
    from localsym.deploy.serve import create_app

    agent = stub_evolving_agent(tmp_path, ROOT / "examples" / "arithmetic")
    try:
        client = TestClient(create_app(agent), raise_server_exceptions=False,
                            base_url="http://127.0.0.1:8765")
        run = client.post("/run", json={"inputs": {"question": "1+1"}}).json()
        answer = client.post("/feedback", json={"id": run["id"], "score": value})
        assert (answer.status_code == 200) == accepted, answer.text
        if not accepted:
            body = answer.json()
            assert set(body) == {"error"} and "score" in body["error"] and \
                "Fix:" in body["error"], body
        # a route that does not exist answers in the service's shape too, not {"detail": ...}
        missing = client.get("/no-such-route")
        assert missing.status_code == 404 and "Fix:" in missing.json()["error"]
    finally:
        agent.close()


def test_a_closed_pipe_is_not_a_disk_problem(tmp_path):
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written (``| head`` done early)
    done = subprocess.run([sys.executable, "-m", "localsym.cli", "models"], stdout=write,
                          stderr=subprocess.PIPE, text=True, timeout=120, cwd=tmp_path)
    os.close(write)
    assert done.returncode == 141 and done.stderr == "", done.stderr


def test_patience_true_is_not_one(tmp_path):
    (tmp_path / "data").mkdir()
    row = json.dumps({"id": "a", "inputs": {"question": "hi"}, "expected": {"answer": "x"}})
    (tmp_path / "data" / "train.jsonl").write_text(row + "\n")
    (tmp_path / "agent.yaml").write_text(json.dumps({
        "name": "t", "inputs": [{"name": "question"}],
        "nodes": [{"name": "answer", "inputs": ["question"], "outputs": [{"name": "answer"}]}]}))
    (tmp_path / "config.yaml").write_text(json.dumps({
        "agent": "agent.yaml", "metric": "exact_match", "models": {"agent": "stub"},
        "train": {"patience": True},
        "dataset": {"train": "data/train.jsonl", "val": "data/train.jsonl"}}))
    done = cli("train", "config.yaml", "--quiet", cwd=tmp_path)
    assert done.returncode == 2 and "train.patience" in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1  # one line
