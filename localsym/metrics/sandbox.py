"""Moved to ``localsym.sandbox`` (model-written code and isolated tools run there, not only
metrics). Kept so that a tool file written against this path still imports."""

from localsym.sandbox import RunResult, containment, landlock_abi, run_python

__all__ = ["RunResult", "containment", "landlock_abi", "run_python"]
