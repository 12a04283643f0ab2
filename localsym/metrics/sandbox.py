"""Moved to ``localsym.sandbox`` (model-written code and isolated tools run there, not only
metrics). Kept one more release so that a tool file written against this path still imports,
with a DeprecationWarning; it will be removed."""

import warnings

from localsym.sandbox import RunResult, containment, landlock_abi, run_python

warnings.warn("localsym.metrics.sandbox is deprecated and will be removed: import "
              "localsym.sandbox instead", DeprecationWarning, stacklevel=2)

__all__ = ["RunResult", "containment", "landlock_abi", "run_python"]
