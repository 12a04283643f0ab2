"""The language-model layer: one call = messages + a pydantic schema + sampling params → a
validated pydantic object, on a local GGUF model, memoized on disk.

    from localsym.lm import open_lm
    lm = open_lm()                      # the embedded default model, with the disk cache
    answer = lm.generate("Is 7 prime?", Answer, max_tokens=32)

Layers, bottom up: ``store`` (JSON documents on disk), ``base`` (the LM interface), ``decoding``
(token choice under a schema), the backends (``llamacpp`` with ``streams``, ``openai``, ``stub``),
``cache`` (any backend memoized, and ``open_lm``, which imports only the backend it opens).
The names below are imported on first use.
"""

from __future__ import annotations

import importlib

_NAMES = {
    "LM": "localsym.lm.base", "Completion": "localsym.lm.base", "Message": "localsym.lm.base",
    "SamplingParams": "localsym.lm.base", "CachedLM": "localsym.lm.cache",
    "default_cache_dir": "localsym.lm.store", "LlamaCpp": "localsym.lm.llamacpp",
    "ModelRef": "localsym.lm.models", "resolve": "localsym.lm.models",
    "open_lm": "localsym.lm.cache",
}
__all__ = sorted(_NAMES)


def __getattr__(name: str):
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'localsym.lm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
