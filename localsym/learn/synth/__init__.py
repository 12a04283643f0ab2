"""The synthesis engine: a node's program found from the training rows and the declared tools,
with no model call (``engine.py`` and the modules it names)."""
