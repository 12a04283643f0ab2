"""Errors a user can cause. Each one says the cause and the fix in one message."""

from __future__ import annotations


class LocalsymError(Exception):
    """Base of every error a user can cause and fix.

    ``str(err)`` is one line: the cause, then ``Fix:`` and what to do. The CLI prints exactly that
    and exits non-zero; library users can read ``err.cause`` and ``err.fix``.
    """

    def __init__(self, cause: str, fix: str | None = None):
        self.cause = cause
        self.fix = fix
        super().__init__(f"{cause} Fix: {fix}" if fix else cause)


class ModelNotFoundError(LocalsymError):
    """A model name or path that resolves to no file."""


class ModelCorruptError(LocalsymError):
    """A model file whose bytes are not the expected GGUF (wrong sha256, bad header, failed
    load)."""


class ChatTemplateError(LocalsymError):
    """A model without a chat template in its GGUF metadata, and no chat format given."""


class CallFailure(LocalsymError):
    """A failure that belongs to one LM call and nothing beside it (the prompt or the answer too
    long, the answer cut off or invalid): in a batch it is that call's result and never fails
    its neighbours; in a run it costs its example, never the run."""


class ContextOverflowError(CallFailure):
    """A prompt (plus the room the answer needs) longer than the model's context."""


class TruncatedOutputError(CallFailure):
    """Generation hit its token budget before the output was complete, even after retries."""


class InvalidOutputError(CallFailure):
    """An output that does not validate against its schema. Never passed on, never cached as an
    answer (the failure itself is cached: the same call fails the same way)."""

    def __init__(self, cause: str, fix: str | None = None, text: str = ""):
        super().__init__(cause, fix)
        self.text = text


class CacheMissError(LocalsymError):
    """Replay mode met a call that was never recorded."""


class CacheError(LocalsymError):
    """The cache directory cannot be used (not writable, disk full)."""


class ConfigError(LocalsymError):
    """A bad argument, config value or environment variable."""


class EndpointError(LocalsymError):
    """An inference server that cannot be reached, times out, or lacks structured outputs."""
