"""The language-model layer: one call = messages + a pydantic schema + sampling params → a
validated pydantic object, on a local GGUF model, memoized on disk.

    from localsym.lm import open_lm
    lm = open_lm()                      # the embedded default model, with the disk cache
    answer = lm.generate("Is 7 prime?", Answer, max_tokens=32)

Layers, bottom up: ``store`` (JSON documents on disk), ``base`` (the LM interface), ``decoding``
(token choice under a schema), the backends (``llamacpp`` with ``streams``, ``openai``, ``stub``),
``cache`` (any backend memoized), ``open`` (``open_lm``, which imports only the backend it
opens).
"""

from __future__ import annotations

from localsym.lm.base import LM, Completion, Message, SamplingParams
from localsym.lm.cache import CachedLM
from localsym.lm.models import ModelRef, resolve
from localsym.lm.open import open_lm
from localsym.lm.store import default_cache_dir

__all__ = ["LM", "CachedLM", "Completion", "LlamaCpp", "Message", "ModelRef", "SamplingParams",
           "default_cache_dir", "open_lm", "resolve"]


def __getattr__(name: str):
    if name == "LlamaCpp":  # the in-process backend: imported only when asked for
        from localsym.lm.llamacpp import LlamaCpp  # noqa: PLC0415 (an attribute loaded when first used)

        return LlamaCpp
    raise AttributeError(f"module 'localsym.lm' has no attribute {name!r}")
