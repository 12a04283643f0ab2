"""Fault points: named places where the crash-safety tests kill the process (failpoints).

Every durable write and every phase boundary of a training step calls ``point(site)``. Unless
``$LOCALSYM_FAULT`` is set this costs one attribute read. With it set, the process kills itself
with SIGKILL (no cleanup, no flush: what a power cut or the OOM killer does):

    LOCALSYM_FAULT=17            at the 17th point reached, whatever its site
    LOCALSYM_FAULT=cache.set:3   at the 3rd time the site ``cache.set`` is reached

``$LOCALSYM_FAULT_LOG=FILE`` appends every site reached to FILE, one per line, so a script can
count a reference run's points and pick kill points across all of them
(``scripts/fault_inject.py``).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_SPEC = os.environ.get("LOCALSYM_FAULT", "")
_LOG = os.environ.get("LOCALSYM_FAULT_LOG", "")
ACTIVE = bool(_SPEC or _LOG)
_site, _, _n = _SPEC.rpartition(":")
_TARGET_SITE, _TARGET_N = (_site, int(_n)) if _SPEC else ("", 0)
_counts: Counter = Counter()


def point(site: str) -> None:
    """A place where a crash must leave everything recoverable."""
    if not ACTIVE:
        return
    _counts[site] += 1
    _counts[""] += 1
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as f:
            f.write(site + "\n")
    if _SPEC and _counts[_TARGET_SITE] == _TARGET_N:
        os.kill(os.getpid(), signal.SIGKILL)
