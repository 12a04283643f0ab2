"""The language-model layer: one call = messages + a pydantic schema + sampling params → a
validated pydantic object, on a local GGUF model, memoized on disk.

    from localsym.lm import open_lm
    lm = open_lm()                      # the embedded default model, with the disk cache
    answer = lm.generate("Is 7 prime?", Answer, max_tokens=32)
"""

from __future__ import annotations

from localsym.lm.base import LM, Completion, Message, SamplingParams
from localsym.lm.cache import CachedLM, default_cache_dir
from localsym.lm.llamacpp import LlamaCpp
from localsym.lm.models import ModelRef, resolve

__all__ = ["LM", "CachedLM", "Completion", "LlamaCpp", "Message", "ModelRef", "SamplingParams",
           "default_cache_dir", "open_lm", "resolve"]


def open_lm(model=None, *, cache_dir=None, cache_mode=None, endpoint: str | None = None,
            endpoint_options: dict | None = None, **llama_kwargs) -> CachedLM:
    """The usual LM behind the disk cache: a local GGUF model (a registry name, a path or a file
    name in models/; default: the embedded one); with ``endpoint`` (an OpenAI-compatible base
    URL, ending in /v1) the model of that name on that server; or ``stub`` (no model: hashed
    answers, for exercising everything around the model)."""
    if endpoint:
        from localsym.errors import ConfigError
        from localsym.lm.openai import OpenAICompatible

        if not model:
            raise ConfigError(f"an endpoint ({endpoint}) needs a model name",
                              "set models.agent to a name the server serves (GET /v1/models)")
        return CachedLM(OpenAICompatible(model, endpoint, **(endpoint_options or {})),
                        cache_dir=cache_dir, mode=cache_mode)
    if model == "stub":
        from localsym.lm.stub import StubLM

        return CachedLM(StubLM(), cache_dir=cache_dir, mode=cache_mode)
    return CachedLM(LlamaCpp(model, cache_dir=cache_dir, **llama_kwargs), cache_dir=cache_dir,
                    mode=cache_mode)
