"""``open_lm``: the one way a model is opened, a backend chosen by what is asked for (a local
GGUF model, a server, or the stub) and put behind the disk cache. It sits above both: the cache
wraps any backend and knows none of them; only the backend asked for is imported."""

from __future__ import annotations

from localsym.errors import ConfigError
from localsym.lm.cache import CachedLM


def open_lm(model=None, *, cache_dir=None, cache_mode=None, endpoint: str | None = None,
            endpoint_options: dict | None = None, **llama_kwargs) -> CachedLM:
    """The usual LM behind the disk cache: a local GGUF model (a registry name, a path or a file
    name in models/; default: the embedded one); with ``endpoint`` (an OpenAI-compatible base
    URL, ending in /v1) the model of that name on that server; or ``stub`` (no model: hashed
    answers, for exercising everything around the model)."""
    if endpoint:
        if not model:
            raise ConfigError(f"an endpoint ({endpoint}) needs a model name",
                              "set models.agent to a name the server serves (GET /v1/models)")
        from localsym.lm.openai import OpenAICompatible  # noqa: PLC0415 (only the backend asked for)

        return CachedLM(OpenAICompatible(model, endpoint, **(endpoint_options or {})),
                        cache_dir=cache_dir, mode=cache_mode)
    if model == "stub":
        from localsym.lm.stub import StubLM  # noqa: PLC0415 (only the backend asked for)

        return CachedLM(StubLM(), cache_dir=cache_dir, mode=cache_mode)
    from localsym.lm.llamacpp import LlamaCpp  # noqa: PLC0415 (only the backend asked for)

    return CachedLM(LlamaCpp(model, cache_dir=cache_dir, **llama_kwargs), cache_dir=cache_dir,
                    mode=cache_mode)
