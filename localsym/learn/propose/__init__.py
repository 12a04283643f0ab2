"""Where a step's candidates come from.

- ``proposer``: the ``Proposer`` that gathers a step's candidates from every source in a fixed
  order (the LLM optimizers, demonstration sets, structural edits, glue).
- ``structure``: structural edits code lists from the spec and the tool registry.
- ``demos``: demonstration sets (labeled and bootstrapped).
- ``glue``: programs the synthesis engine (``learn/synth/``) finds on the training data.
- ``merge``: the merge of two candidates that changed different nodes.

Nothing here decides; the search (``learn/search.py``) screens and validates every candidate.
"""
