"""Deployment: the self-evolving agent (``evolve.EvolvingAgent``, its versions, samples,
feedback and rounds in one SQLite database) and the HTTP service around it (``serve``)."""

from __future__ import annotations

from localsym.deploy.evolve import EvolvingAgent
from localsym.deploy.store import Busy, NotFound

__all__ = ["Busy", "EvolvingAgent", "NotFound"]
