"""localsym: agent symbolic learning (arXiv 2406.18532), local-first.

Agents are symbolic networks (workflow nodes are layers, prompts and tools their weights), trained
with language losses, language gradients and LLM optimizers, on open-weight GGUF models run
in-process by llama.cpp, every output forced into a pydantic schema, every call cached on disk.
"""

__version__ = "0.1.0"
