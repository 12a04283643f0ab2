"""The tools' results during a run's searches: memoized by (tool, arguments) across steps,
within the search's budget of distinct calls, a tool that hangs or only fails given up on."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from localsym.agent.tools import ToolCallRecord, ToolRegistry

GIVE_UP = 400  # a tool given up on after failing so many calls, and answering none


@dataclass
class ToolMemo:
    """Tool results by (tool, arguments), kept across steps, and tools given up on."""

    results: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)  # result,
    # or None and the error
    broken: set[str] = field(default_factory=set)
    calls: int = 0
    found: dict[str, list] = field(default_factory=dict)  # a search's programs, by its inputs
    tally: dict[str, tuple[int, int]] = field(default_factory=dict)  # per tool: worked, failed


class MemoTools:
    """A tool registry's calls through the memo, within the call budget (what ``run_program``
    calls on the held-back examples)."""

    def __init__(self, registry: ToolRegistry, memo: ToolMemo, budget: int):
        self.registry, self.memo, self.budget = registry, memo, budget

    def call(self, tool: str, args: dict[str, Any]):
        key = f"{tool}\x00{json.dumps(args, sort_keys=True, default=str)}"
        if key not in self.memo.results:
            if tool in self.memo.broken or self.memo.calls >= self.budget:
                return ToolCallRecord(tool=tool, args=args, error="not called (search bound)")
            self.memo.calls += 1
            record = self.registry.call(tool, args)
            if record.error and record.error.startswith("timed out"):
                self.memo.broken.add(tool)  # a tool that hangs is not called any further
            worked, failed = self.memo.tally.get(tool, (0, 0))
            self.memo.tally[tool] = (worked + record.ok, failed + (not record.ok))
            if not worked and not record.ok and failed + 1 >= GIVE_UP:
                self.memo.broken.add(tool)  # it failed on every call so far: given up
            self.memo.results[key] = (record.result, None) if record.ok else \
                (None, str(record.error)[:300])
        result, error = self.memo.results[key]
        return ToolCallRecord(tool=tool, args=args, result=result, error=error)
