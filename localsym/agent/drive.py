"""Many runs of an agent, their model calls batched: each run is a generator of LM calls
(``Pipeline._forward_steps``), and the pending call of every active run goes to the LM together."""

from __future__ import annotations

from localsym.lm.base import LM


def drive(lm: LM, runs: list) -> list:
    """Run generators of LM calls (see ``Pipeline._forward_steps``) to completion, the pending
    call of every active one sent to ``lm.call_batch`` together, in the order of ``runs`` (so
    a batch is the same every time). At most ``lm.batch_hint`` runs are active at once (the
    calls the backend decodes together; 0: all): a run's next call then finds its own earlier
    prompt still in a KV stream, and as one run ends the next begins. Returns each generator's
    return value, in order."""
    results: list = [None] * len(runs)
    pending: dict[int, tuple] = {}
    window = max(1, int(lm.batch_hint or len(runs)))
    waiting = iter(range(len(runs)))

    def advance(i: int, answer) -> None:
        try:
            call = runs[i].throw(answer) if isinstance(answer, Exception) else runs[i].send(answer)
        except StopIteration as stop:
            results[i] = stop.value
            pending.pop(i, None)
            return
        pending[i] = call

    def fill() -> None:
        while len(pending) < window:
            i = next(waiting, None)
            if i is None:
                return
            advance(i, None)

    fill()
    while pending:
        order = sorted(pending)
        for i, answer in zip(order, lm.call_batch([pending[i] for i in order])):
            advance(i, answer)
        fill()
    return results
