"""The package as a user installs it: build the sdist and the wheel, check the wheel holds every
file of the source tree it should, install it (not editable) into a fresh virtual environment,
and there, away from the checkout, run ``localsym --help``, ``localsym init``, a training on the
stub model, ``localsym report`` and ``localsym.train(...)`` from Python. Run by CI.

    .venv/bin/python scripts/check_wheel.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API = """
import sys
import localsym
from localsym.agent.tools import default_tools
from localsym.data import Example
sys.path.insert(0, "task")
import tools
registry = default_tools()
registry.register(tools.sort_words)
rows = [Example(id=f"r{i}", inputs={"words": w}, expected={"sorted": " ".join(sorted(w.split()))})
        for i, w in enumerate(["pear fig", "kiwi apple plum", "b a", "dog cat ant"])]
spec = localsym.train("task/agent.yaml", rows[:2], rows[2:], lm="stub", metric="exact_match",
                      config={"max_steps": 1}, tools=registry, log=lambda *a: None)
print("api: trained", spec.name, "nodes", len(spec.nodes))
"""


def expected_files() -> set[str]:
    """What the wheel must hold: every module of localsym/, the init template, and models/ and
    prompts/ under localsym/."""
    out = {str(p.relative_to(ROOT)) for p in (ROOT / "localsym").rglob("*")
           if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".j2", ".yaml",
                                                                              ".csv")}
    for folder, kinds in (("models", ("*.toml", "README.md", "__init__.py")),
                          ("prompts", ("*.j2", "README.md", "__init__.py"))):
        for kind in kinds:
            out |= {f"localsym/{folder}/{p.name}" for p in (ROOT / folder).glob(kind)}
    return out


def run(cmd: list[str], cwd: Path, env: dict) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode:
        sys.exit(f"check_wheel: {' '.join(cmd)} failed ({done.returncode}):\n"
                 f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done.stdout + done.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", type=Path, help="build and install here (kept)")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="wheel-check-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run([sys.executable, "-m", "build", "--outdir", str(work / "dist"), str(ROOT)], ROOT, env)
    wheel = Path(glob.glob(str(work / "dist" / "*.whl"))[0])
    sdist = Path(glob.glob(str(work / "dist" / "*.tar.gz"))[0])
    held = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(expected_files() - held)
    if missing:
        sys.exit(f"check_wheel: the wheel lacks {len(missing)} file(s) of the source tree: "
                 f"{missing[:10]}")
    print(f"wheel: {wheel.name}, {len(held)} files, every one of the source tree's "
          f"{len(expected_files())} in it; sdist {sdist.name}")
    venv.EnvBuilder(with_pip=True, clear=True).create(work / "venv")
    py = work / "venv" / "bin" / "python"
    wheelhouse = glob.glob(os.path.expanduser(os.environ.get(
        "LOCALSYM_WHEELHOUSE", "~/.cache/localsym/wheels")) + "/*/llama_cpp_python-*.whl")
    links = ["--find-links", str(Path(wheelhouse[0]).parent)] if wheelhouse else []
    run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *links,
         str(wheel)], work, env)
    bin_ = work / "venv" / "bin"
    home = work / "home"
    home.mkdir(exist_ok=True)
    env = {**env, "LOCALSYM_CACHE_DIR": str(work / "cache"), "HOME": str(home)}
    where = run([str(py), "-c", "import localsym; print(localsym.__file__)"], home, env)
    if str(ROOT) in where:
        sys.exit(f"check_wheel: localsym was imported from the checkout ({where.strip()})")
    run([str(bin_ / "localsym"), "--help"], home, env)
    run([str(bin_ / "localsym"), "init", "task"], home, env)
    config = home / "task" / "config.yaml"
    config.write_text(config.read_text() + "models: {agent: stub}\n")
    out = run([str(bin_ / "localsym"), "train", str(config), "--quiet", "--run-dir",
               str(home / "run")], home, env)
    line = next((x for x in out.splitlines() if "validation" in x and "->" in x), "")
    print(f"stub training from the wheel: {line.strip()}")
    run([str(bin_ / "localsym"), "report", str(home / "run")], home, env)
    summary = json.loads((home / "run" / "summary.json").read_text())
    print(f"report: {home / 'run' / 'report.html'} written; summary steps {summary['steps']}")
    print(run([str(py), "-c", API], home, env).strip().splitlines()[-1])
    print("check_wheel: ok")


if __name__ == "__main__":
    main()
