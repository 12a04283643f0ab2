"""The meta-prompts of the algorithm, as Jinja2 templates; data only."""
