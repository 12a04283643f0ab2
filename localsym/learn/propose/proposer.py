"""Where a step's candidates come from: the LLM optimizers (written from the gradients), the
demonstration sets, the structural edits and the glue code lists (this package), in a fixed order,
each a child of the parent; the search (``learn/search.py``) admits the ones it will screen."""

from __future__ import annotations

from typing import NamedTuple

from localsym.agent.spec import PipelineSpec
from localsym.agent.tools import ToolRegistry
from localsym.data import Example
from localsym.agent.pipeline import check_tools
from localsym.errors import CallFailure, ConfigError
from localsym.learn.propose.demos import bootstrapped_demonstrations, labeled_demonstrations
from localsym.learn.backward import ExampleGradients
from localsym.learn.propose.children import Child
from localsym.learn.propose.glue import glue_edits
from localsym.learn.synth.engine import SynthStats, ToolMemo
from localsym.learn.propose.structure import structural_edits
from localsym.learn.optim import Batch, Optimizer, UpdateRecord
from localsym.learn.search import Candidate, admit
from localsym.learn.state import TrainConfig
from localsym.metrics import Metric
from localsym.seeds import demo_seed


class Proposed(NamedTuple):
    """A step's candidates, the edits refused on the way (with why), the optimizer calls that
    failed (with why), and what the synthesis engine looked at."""

    candidates: list[Candidate]
    rejected: list[str]
    failures: list[str]
    synthesis: SynthStats | None = None


class Proposer:
    """Every candidate of a step, from the sources the config names."""

    def __init__(self, optimizers: dict[str, Optimizer], config: TrainConfig,
                 tools: ToolRegistry, metric: Metric | None = None):
        self.optimizers, self.config, self.tools, self.metric = optimizers, config, tools, metric
        self.memo = ToolMemo()  # the tools' results on the training examples, across steps

    def __call__(self, spec: PipelineSpec, step: int, llm: list[str],
                 grads: list[ExampleGradients], failing: list, train: list[Example],
                 successes: list, memory: list[UpdateRecord], tried: list[str],
                 known: dict[str, float] | None = None,
                 unlabeled: list[dict] | None = None) -> Proposed:
        """The candidates of step ``step`` in a fixed order (LLM optimizers, demonstrations,
        glue found from the training data, structural edits), each a child of ``spec``; the
        ones that change the final outputs or were tried before (``tried``) are left out.
        ``unlabeled``: inputs with no answer the search may compute its values on (the
        validation inputs: never their answers)."""
        cfg, rejected, failures = self.config, [], []
        stats = None
        proposed: list[Candidate] = []
        if grads:
            ok_ids = {g.example_id for g in grads}
            data = Batch(trajectories=[s.trajectory for s in failing if s.example.id in ok_ids],
                         gradients=grads, rows=[{"inputs": s.example.inputs,
                                                 "expected": s.example.expected or {}}
                                                for s in failing if s.example.id in ok_ids])
            for name in llm:
                try:
                    proposal = self.optimizers[name].step(spec, data, memory)
                except CallFailure as err:
                    failures.append(f"optimizer {name}: {type(err).__name__}: {err.cause}")
                    continue
                rejected += [f"{name}: {r}" for r in proposal.rejected]
                try:
                    check_tools(proposal.spec, self.tools)
                except ConfigError as err:
                    rejected.append(f"{name}: {err.cause}")
                    continue
                if proposal.edits:
                    proposed.append(Candidate(source=name, spec=proposal.spec,
                                              edits=list(proposal.edits)))
        if "demonstrations" in cfg.optimizers:
            seed = demo_seed(cfg.seed, step)
            proposed += _of("demonstrations", labeled_demonstrations(
                spec, train, cfg.demo_sizes, seed) + bootstrapped_demonstrations(
                spec, successes, cfg.demo_sizes, seed))
        if "structure" in cfg.optimizers:
            rows = [ex for ex in train if ex.expected][:cfg.synthesis.examples]
            found, stats = glue_edits(spec, self.tools, rows, self.metric, self.memo,
                                      cfg.synthesis, known, unlabeled)
            proposed += _of("structure", found, seen=[ex.id for ex in rows])
            proposed += _of("structure", structural_edits(spec, self.tools))
        out, refused = admit(spec, proposed, tried, cfg.max_candidates)
        return Proposed(out, rejected + refused, failures, stats)


def _of(source: str, found: list[Child], seen: list[str] | None = None) -> list[Candidate]:
    """Candidates of ``source`` from a proposer's children."""
    return [Candidate(source=source, edits=c.edits, spec=c.spec, note=c.note, seen=seen or [])
            for c in found]
