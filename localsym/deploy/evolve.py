"""A self-evolving agent: it answers, keeps every answer with its trajectory, takes feedback on
them later, and retrains itself on what it collected (the paper's second use of symbolic learning).

    agent = EvolvingAgent.open("deploy/", config, base)    # or localsym serve AGENT
    sample = agent.run({"question": "..."})                # {"id", "version", "outputs", ...}
    agent.feedback(sample["id"], expected={"answer": "..."})   # or score=0.2, text="too long"
    agent.evolve()                                         # a round now (else every N feedbacks)
    agent.rollback(1)                                      # the live version back to version 1

Everything durable lives in one SQLite database in the deployment directory (``agent.db``):
versions (every spec ever proposed, with its status), the live version, samples (inputs, outputs,
trajectory), feedback, and rounds. A call returns only after its rows are committed, so nothing
acknowledged is lost on a crash or restart. A round trains a copy of the live spec with the same
Trainer as ``localsym train`` (checkpoints in ``rounds/round-N/``), then puts the candidate
through the same validation gate against the live version on a held-back slice of the collected
samples plus an optional fixed validation set. Only an accepted candidate goes live, by one
atomic switch; answers keep being served by the live version while a round runs.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

from localsym.agent import Pipeline, PipelineSpec, default_tools
from localsym.agent.tools import add_references
from localsym.config import DeployConfig
from localsym.data import Example, load_jsonl
from localsym.metrics import metric
from localsym.deploy.store import Busy, NotFound, Store
from localsym.errors import ConfigError, LocalsymError
from localsym.text import not_storable


class EvolvingAgent:
    """A deployed agent that keeps learning from its own use (see the module doc)."""

    def __init__(self, directory: str | Path, config: DeployConfig, base: Path,
                 agent_lm=None, optimizer_lm=None, log=print):
        self.directory, self.config, self.base, self.log = Path(directory), config, base, log
        self.store = Store(self.directory / "agent.db")
        # the user's code first: a bad reference fails before a model is loaded
        self.metric = metric(config.metric, base, config.metric_timeout)
        self.tools = add_references(default_tools(), config.tools, base)
        models, cache = config.models, config.cache
        self.agent_lm = agent_lm or models.open("agent", cache)
        self.optimizer_lm = optimizer_lm or (
            self.agent_lm if models.shared() else models.open("optimizer", cache))
        self.fixed_val = load_jsonl(base / config.validation) if config.validation else []
        self._pipelines: dict[int, Pipeline] = {}
        self._round: threading.Thread | None = None
        self._round_lock = threading.Lock()
        spec = PipelineSpec.load(base / config.agent)
        if config.task:
            spec = spec.model_copy(update={"description": config.task})
        first = self.store.rows("SELECT id FROM versions ORDER BY id LIMIT 1")
        if not first:
            self._add_version(spec, None, None, "initial", "the initial agent", live=True)
        elif self._initial_differs(first[0]["id"], spec):
            self.store.close()
            raise ConfigError(f"deployment {self.directory} was started with another agent than "
                              f"{base / config.agent} (its initial version differs)",
                              "serve that agent from its own --dir, or give the agent this "
                              "deployment began with (its versions: GET /versions)")
        # a round that was running when the process died is over; its checkpoints stay on disk
        self.store.write("UPDATE rounds SET status='interrupted', finished=? "
                         "WHERE status='running'", (time.time(),))

    def _initial_differs(self, vid: int, spec: PipelineSpec) -> bool:
        try:
            return self._read_version(vid) != spec
        except ConfigError:
            self.store.close()
            raise

    # -- versions -------------------------------------------------------------------------------
    def _add_version(self, spec: PipelineSpec, parent: int | None, round_id: int | None,
                     status: str, reason: str, val: float | None = None,
                     live: bool = False) -> int:
        with self.store.lock:
            vid = self.store.write(
                "INSERT INTO versions (spec, parent, round, status, reason, val_score, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (spec.model_dump_json(), parent, round_id, status, reason, val, time.time()))
            assert vid is not None  # an INSERT has a row id
            if live:
                self._set_live(vid)
            return vid

    def _set_live(self, vid: int) -> None:
        self.store.write("INSERT INTO meta (key, value) VALUES ('live', ?) "
                         "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (str(vid),))

    @property
    def live_version(self) -> int:
        return int(self.store.rows("SELECT value FROM meta WHERE key='live'")[0]["value"])

    def spec(self, version: int | None = None) -> PipelineSpec:
        vid = self.live_version if version is None else version
        return self._read_version(vid)

    def _read_version(self, vid: int) -> PipelineSpec:
        rows = self.store.rows("SELECT spec FROM versions WHERE id=?", (vid,))
        if not rows:
            raise NotFound(f"no version {vid}", "list them with GET /versions")
        try:
            return PipelineSpec.model_validate_json(rows[0]["spec"])
        except (ValueError, TypeError) as err:  # a row edited or damaged outside localsym
            raise ConfigError(f"version {vid} in {self.store.path} is not a readable agent "
                              f"spec ({type(err).__name__})", "roll back to another version "
                              "(POST /rollback), or restore the deployment directory") from None

    def versions(self) -> list[dict]:
        live = self.live_version
        return [{**r, "live": r["id"] == live} for r in self.store.rows(
            "SELECT id, parent, round, status, reason, val_score, created FROM versions "
            "ORDER BY id")]

    def rollback(self, version: int) -> dict:
        """Make ``version`` (any earlier one, accepted or not) the live one."""
        self.spec(version)  # exists
        self._set_live(version)
        self.log(f"live version is now {version} (rollback)")
        return {"live": version}

    # -- serving --------------------------------------------------------------------------------
    def _pipeline(self, vid: int) -> Pipeline:
        if vid not in self._pipelines:
            self._pipelines[vid] = Pipeline(self.spec(vid), self.agent_lm, self.tools,
                                            self.config.sampling)
        return self._pipelines[vid]

    def run(self, inputs: dict[str, Any]) -> dict:
        """Answer with the live version; the sample is stored before this returns."""
        _storable(inputs, "inputs")
        vid = self.live_version
        pipe = self._pipeline(vid)
        missing = [f.name for f in pipe.spec.inputs if f.name not in inputs]
        if missing:
            raise ConfigError(f"inputs lack the agent's fields {missing}",
                              f"send inputs with {[f.name for f in pipe.spec.inputs]}")
        traj = pipe.forward(inputs)
        with self.store.lock:
            seq = self.store.rows("SELECT COALESCE(MAX(seq), 0) + 1 AS n FROM samples")[0]["n"]
            digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
            sid = f"s{seq:06d}-{digest[:8]}"
            self.store.write(
                "INSERT INTO samples (id, seq, version, inputs, outputs, error, trajectory, "
                "created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (sid, seq, vid, json.dumps(inputs), json.dumps(traj.outputs) if traj.ok else None,
                 traj.error, traj.model_dump_json(), time.time()))
        return {"id": sid, "version": vid, "ok": traj.ok, "outputs": traj.outputs,
                "error": traj.error}

    def sample(self, sample_id: str) -> dict:
        if not_storable(sample_id):
            raise NotFound(f"no sample {sample_id.encode('utf-8', 'backslashreplace').decode()}",
                           "use the id that /run returned")
        rows = self.store.rows("SELECT id, version, inputs, outputs, error, created FROM samples "
                               "WHERE id=?", (sample_id,))
        if not rows:
            raise NotFound(f"no sample {sample_id!r}", "use the id that /run returned")
        row = rows[0]
        row["inputs"] = json.loads(row["inputs"])
        row["outputs"] = json.loads(row["outputs"]) if row["outputs"] else None
        row["feedback"] = self.store.rows("SELECT score, expected, text, created FROM feedback "
                                          "WHERE sample=? ORDER BY id", (sample_id,))
        return row

    def feedback(self, sample_id: str, score: float | None = None,
                 expected: dict | None = None, text: str | None = None) -> dict:
        """Store feedback on an earlier answer (a score in [0, 1], the expected outputs, or free
        text, any of them); may start a round (``evolve.every``)."""
        if score is None and expected is None and not text:
            raise ConfigError("feedback needs a score, an expected output or a text",
                              'send e.g. {"id": ..., "score": 0.0, "text": "wrong"}')
        if score is not None and not 0.0 <= score <= 1.0:
            raise ConfigError(f"score {score} is outside [0, 1]", "send a score from 0 to 1")
        _storable({"expected": expected, "text": text}, "feedback")
        self.sample(sample_id)
        outputs = set(self.spec().final_outputs()) if expected else set()
        if expected and set(expected) - outputs:
            raise ConfigError(f"feedback expects {sorted(set(expected) - outputs)}, which the "
                              f"agent never outputs (its answer: {sorted(outputs)})",
                              "send expected values for the agent's own outputs")
        fid = self.store.write("INSERT INTO feedback (sample, score, expected, text, created) "
                               "VALUES (?, ?, ?, ?, ?)",
                               (sample_id, score, json.dumps(expected) if expected else None,
                                text, time.time()))
        started = None
        every = self.config.evolve.every
        if every and self._new_feedback() >= every and not self.evolving:
            started = self.evolve(wait=False, trigger=f"every {every} feedbacks")
        return {"stored": fid, "round": started}

    def _new_feedback(self) -> int:
        seen = self.store.rows("SELECT COALESCE(MAX(feedback_seen), 0) AS n FROM rounds")[0]["n"]
        return self.store.rows("SELECT COUNT(*) AS n FROM feedback WHERE id > ?", (seen,))[0]["n"]

    # -- evolution ------------------------------------------------------------------------------
    @property
    def evolving(self) -> bool:
        return self._round is not None and self._round.is_alive()

    def rounds(self) -> list[dict]:
        return self.store.rows("SELECT * FROM rounds ORDER BY id")

    def evolve(self, wait: bool = True, trigger: str = "on demand") -> dict:
        """Start a round; with ``wait`` run it here and return its record."""
        with self._round_lock:
            if self.evolving:
                raise Busy("an evolution round is already running",
                           "wait for it (GET /rounds) and try again")
            seen = self.store.rows("SELECT COALESCE(MAX(id), 0) AS n FROM feedback")[0]["n"]
            rid = self.store.write(
                "INSERT INTO rounds (status, trigger, live_before, started, feedback_seen) "
                "VALUES ('running', ?, ?, ?, ?)", (trigger, self.live_version, time.time(), seen))
            # always in its own thread, so ``evolving`` is true for a waited-on round too
            thread = threading.Thread(target=self._round_safely, args=(rid,),
                                      name=f"evolve-{rid}", daemon=True)
            self._round = thread
            thread.start()
        if not wait:
            return {"round": rid, "status": "running"}
        thread.join()
        return self.store.rows("SELECT * FROM rounds WHERE id=?", (rid,))[0]

    def _round_safely(self, rid: int) -> None:
        try:
            self._round_body(rid)
        except Exception as err:  # a failed round never takes the service down
            cause = err.cause if isinstance(err, LocalsymError) else f"{type(err).__name__}: {err}"
            self._finish(rid, "failed", decision="failed", reason=cause[:500])
            self.log(f"round {rid} failed: {cause}")

    def _finish(self, rid: int, status: str, **fields) -> None:
        cols = ", ".join(f"{k}=?" for k in fields)
        self.store.write(f"UPDATE rounds SET status=?, finished=?{', ' if cols else ''}{cols} "
                         f"WHERE id=?", (status, time.time(), *fields.values(), rid))

    def examples(self) -> list[Example]:
        """The collected samples a round learns from: those with feedback (the latest of each
        kind per sample), plus the rest with ``evolve.unlabeled``; the most recent first."""
        policy = self.config.evolve
        rows = self.store.rows(
            "SELECT s.id, s.inputs, (SELECT expected FROM feedback f WHERE f.sample=s.id AND "
            "f.expected IS NOT NULL ORDER BY f.id DESC LIMIT 1) AS expected, "
            "(SELECT score FROM feedback f WHERE f.sample=s.id AND f.score IS NOT NULL "
            "ORDER BY f.id DESC LIMIT 1) AS score, "
            "(SELECT group_concat(text, ' / ') FROM feedback f WHERE f.sample=s.id AND "
            "f.text IS NOT NULL) AS text, "
            "EXISTS (SELECT 1 FROM feedback f WHERE f.sample=s.id) AS has_feedback "
            "FROM samples s ORDER BY s.seq DESC")
        out = []
        for r in rows:
            if not r["has_feedback"] and not policy.unlabeled:
                continue
            words = [f"score {r['score']:.2f} of 1" if r["score"] is not None else "",
                     r["text"] or ""]
            out.append(Example(id=r["id"], inputs=json.loads(r["inputs"]),
                               expected=json.loads(r["expected"]) if r["expected"] else None,
                               feedback="; ".join(w for w in words if w) or None))
            if len(out) >= policy.max_samples:
                break
        return out

    def split(self, examples: list[Example]) -> tuple[list[Example], list[Example]]:
        """Held-back validation slice chosen by a hash of the sample id: stable as samples
        accumulate (a sample never moves from validation to training)."""
        def bucket(ex):
            return int(hashlib.sha256(ex.id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        val = [ex for ex in examples if bucket(ex) < self.config.evolve.holdout]
        train = [ex for ex in examples if bucket(ex) >= self.config.evolve.holdout]
        if not val and len(train) > 1:
            val, train = train[-1:], train[:-1]
        if not train and len(val) > 1:
            train, val = val[:1], val[1:]
        return sorted(train, key=lambda e: e.id), sorted(val, key=lambda e: e.id)

    def _round_body(self, rid: int) -> None:
        cfg = self.config
        examples = self.examples()
        if len(examples) < cfg.evolve.min_samples:
            self._finish(rid, "done", decision="skipped", train_size=len(examples),
                         reason=f"{len(examples)} samples with feedback, fewer than "
                                f"evolve.min_samples={cfg.evolve.min_samples}")
            return
        train, held = self.split(examples)
        val = held + self.fixed_val
        live = self.live_version
        live_spec = self.spec(live)
        trainer = cfg.trainer(live_spec, self.agent_lm, self.optimizer_lm, self.tools,
                              self.metric, self.directory / "rounds" / f"round-{rid:04d}",
                              log=self.log)
        state = trainer.fit(train, val)
        candidate = state.best_spec  # the best of the pool (the live version is its first entry)
        sizes = {"train_size": len(train), "val_size": len(val)}
        if candidate == live_spec:
            # the gate already refused every proposal inside training: keep the last one as a
            # rejected version; or nothing was proposed at all
            refused = [e for e in trainer.dir.steps() if e.decision == "rolled back"]
            if not refused:
                self._finish(rid, "done", decision="no change", val_live=state.best_score,
                             reason="the optimizers proposed no change", **sizes)
                return
            last = refused[-1]
            vid = self._add_version(PipelineSpec.model_validate(last.proposed_spec), live,
                                    rid, "rejected", last.reason, last.val_after)
            self._finish(rid, "done", decision="rejected", reason=last.reason, candidate=vid,
                         val_live=last.val_before, val_candidate=last.val_after, **sizes)
            self.log(f"round {rid}: rejected version {vid} ({last.reason})")
            return
        # the same gate as in training: the candidate against the live version, same examples
        old = trainer.score(live_spec, val, "gate: live")
        new = trainer.score(candidate, val, "gate: candidate")
        ok, why = trainer.gate(new, old, step=rid)[:2]
        v_old, v_new = sum(old) / len(old), sum(new) / len(new)
        with self.store.lock:
            still_live = self.live_version == live  # nobody rolled back during the round
            if ok and not still_live:
                ok, why = False, f"{why}; but the live version changed during the round"
            vid = self._add_version(candidate, live, rid, "accepted" if ok else "rejected", why,
                                    v_new, live=ok)
            self._finish(rid, "done", decision="accepted" if ok else "rejected", reason=why,
                         candidate=vid, val_live=v_old, val_candidate=v_new, **sizes)
        self.log(f"round {rid}: {'accepted' if ok else 'rejected'} version {vid} "
                 f"(validation {v_old:.3f} -> {v_new:.3f}; {why})")

    def wait(self, timeout: float | None = None) -> None:
        if self._round is not None:
            self._round.join(timeout)

    def close(self) -> None:
        self.wait()
        self.agent_lm.close()
        if self.optimizer_lm is not self.agent_lm:
            self.optimizer_lm.close()
        self.store.close()


def _storable(value: Any, what: str) -> None:
    """A request's data must be storable as JSON and read back (or it would be a 500 later)."""
    why = not_storable(value)
    if why:
        raise ConfigError(f"{what}: {why}", "send valid UTF-8 text and finite numbers")
