"""Crash safety: SIGKILL a training run at 20+ different points (inside cache writes, inside
checkpoint writes, between the phases of a step, at random moments), resume each, and get an agent
byte-identical to an uninterrupted run's with every step logged once. Uses scripts/fault_inject.py
on the stub model (the real CLI, the real disk cache and checkpoints; no LLM, so it is fast)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "fault_inject.py"


def test_sigkill_at_any_point_then_resume_gives_the_same_agent(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--trials", "22", "--timer", "3",
                           "--workdir", str(tmp_path)], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["different"] == 0 and summary["identical"] == summary["trials"] >= 25
    assert summary["distinct_points"] >= 20 and summary["kills"] >= 25
    assert summary["torn_checkpoints"] >= 3  # a damaged state.json fell back to checkpoints/
    assert {"cache.set", "cache.stored", "write.fsync", "write.rename", "append.mid",
            "checkpoint.saved", "step.logged"} <= set(summary["sites"])
