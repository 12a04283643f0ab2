"""The `localsym` command, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

LOCALSYM = [str(Path(sys.executable).parent / "localsym")]


def run(*args, env_extra=None):
    import os

    return subprocess.run(LOCALSYM + list(args), capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env_extra or {})})


def test_generate_on_the_embedded_model_then_from_the_cache(cache_dir):
    first = run("generate", "Name a primary color.", "--max-tokens", "32")
    assert first.returncode == 0, first.stderr
    assert isinstance(json.loads(first.stdout)["answer"], str)
    assert "generated" in first.stderr
    second = run("generate", "Name a primary color.", "--max-tokens", "32")
    assert second.stdout == first.stdout and "cache hit" in second.stderr
    stats = run("cache", "stats")
    assert json.loads(stats.stdout)["entries"] == 1
    assert json.loads(stats.stdout)["hits"] == 1


def test_user_errors_are_one_line_and_exit_2(tmp_path):
    for args in (["generate", "hi", "--model", str(tmp_path / "none.gguf")],
                 ["generate", "hi", "--schema", "nosuchmodule:Thing"],
                 ["generate", "hi", "--max-tokens", "0"]):
        proc = run(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("localsym: error:"), proc.stderr
        assert "Fix:" in lines[0]
        assert "Traceback" not in proc.stderr


def test_models_lists_the_registry():
    proc = run("models")
    assert proc.returncode == 0
    line = next(l for l in proc.stdout.splitlines() if l.startswith("smollm2-135m-instruct"))
    assert "verified" in line  # present, and its sha256 matches the registry
    assert "gemma3-270m" in proc.stdout


def test_wheel_ships_the_registry_and_prompts(tmp_path):
    """An installed localsym must find models/ and prompts/ without the repository."""
    root = Path(__file__).parent.parent
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path), str(root)], check=True,
                   capture_output=True)
    import zipfile

    (wheel,) = tmp_path.glob("localsym-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "localsym/models/registry.toml" in names
    assert "localsym/prompts/__init__.py" in names
