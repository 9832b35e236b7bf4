"""A small real log for mounting attacks: parties, their keys, and the lab's and the auditor's side of a run.

A :class:`Scenario` is a log directory laid out as ``redline log init`` lays it out (``log.db``: a
:class:`~redline.log.service.Log` on :class:`~redline.log.sqlite.SqliteStore`; ``log.key``), started with
:meth:`Registry.genesis <redline.registry.Registry.genesis>`, with the coordinator, two labs, an auditor
and a regulator admitted (deterministic keys, saved as key files under ``keys/``). Everything then goes
through the public API the parties use:

- a lab declares a transcript with the command line itself, ``redline run start`` and ``redline run
  declare --submit`` (:meth:`Scenario.run_start`, :meth:`Scenario.run_declare`);
- a lab (or an attacker with its own tools) signs any other statement with the statement builders
  (:meth:`Scenario.say`), or signs a statement the builders refuse (:meth:`Scenario.forge`): the
  registry must refuse it;
- an auditor verifies a run as ``redline verify run --log --submit`` does (:meth:`Scenario.audit`): the
  RunStart and the latest declaration read back from the log and their signatures and inclusion
  re-verified, the sample seed from the first signed checkpoint after the declaration,
  ``verify_transcript(run_start=, declaration=, run=)``, a signed ``VerificationReport`` submitted.

Every attempt is answered with an :class:`Answer`: accepted (the log entries it made) or refused (the
error the registry or the command line gave), so an attack can record what the log said to each of its
moves. A fresh :class:`~redline.registry.Registry` is opened for every action, so the command line's own
appends (through its own registry) are always seen.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redline.crypto.canonical import canonical_digest
from redline.crypto.keys import SigningKey, save_signing_key
from redline.errors import RedlineError

#: The test log's origin (and its key's name).
LOG_ORIGIN = "redline.test/attack-log"
#: The parties every scenario admits after the coordinator: two labs, an auditor, a regulator.
PARTIES: tuple[tuple[str, str], ...] = (("lab-a", "lab"), ("lab-b", "lab"), ("audit", "auditor"),
                                        ("gov", "regulator"))


def party_key(name: str) -> SigningKey:
    """A deterministic Ed25519 key per name (the seed is the SHA-256 of the canonical name)."""
    return SigningKey(name, bytes.fromhex(canonical_digest(["redline-testing-key", name])))


def review_policy(threshold_flop: float = 1e6, window_days: float = 30) -> Any:
    """A policy whose one line puts every model lineage over ``threshold_flop`` under pre-release review.

    The default line (10^6 FLOP) is crossed by the tiny test runs, so releasing their weights needs a
    review of those weights, as a frontier model's would under ``pre-release-review``.
    """
    from redline.policy.model import policy_from_document

    return policy_from_document({
        "id": "attack-review", "version": 1,
        "title": f"Every model over {threshold_flop:g} FLOP is reviewed before release",
        "source": "redline.testing: the pre-release-review line, moved down to where tiny test runs cross it",
        "parameters": {"review_window_days": window_days},
        "lines": [{"id": "review-all", "title": f"Models over {threshold_flop:g} FLOP are reviewed before release",
                   "metric": "training_compute", "unit": "FLOP", "comparator": ">", "value": threshold_flop,
                   "scope": "model-lineage", "evidence": "declared",
                   "consequence": {"kind": "review", "window_days": window_days},
                   "source": "redline.testing"}]}, where="review_policy")


def now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


@dataclass
class Answer:
    """What the log (or the command line in front of it) answered one attempt."""

    what: str  # the attempt, in words
    via: str  # how it was made: the command line, the statement builders, a forged envelope, the registry
    refused: bool
    error: str | None = None  # the refusal: the error's type and message
    indexes: list[int] = field(default_factory=list)  # the log entries it made when accepted

    def __str__(self) -> str:
        head = f"{self.what} [{self.via}]: "
        return head + (f"REFUSED ({self.error})" if self.refused else f"accepted at entries {self.indexes}")


@dataclass
class Audit:
    """An auditor's verification of a run declared on the log, and the report it submitted."""

    run_party: str
    run_id: str
    transcript: Path
    result: Any  # redline.verify.VerificationResult
    declaration_index: int | None
    report: Answer | None = None

    @property
    def verdict(self) -> str:
        """``pass``, ``fail`` or ``inconclusive``."""
        return self.result.verdict

    def check(self, name: str) -> Any:
        """The check called ``name`` (``StopIteration`` if the verifier did not make it)."""
        return next(c for c in self.result.checks if c.name == name)

    def failed_checks(self) -> list[str]:
        """Names of the checks that did not pass (inconclusive ones included)."""
        return [c.name for c in self.result.checks if not c.passed]


class Scenario:
    """A real log in ``workdir / "log"`` with its parties admitted and, optionally, a policy published."""

    def __init__(self, workdir: str | Path, *, parties: Iterable[tuple[str, str]] = PARTIES,
                 policy: Any = None) -> None:
        from redline.log.service import Log
        from redline.log.sqlite import SqliteStore
        from redline.registry import Registry

        self.workdir = Path(workdir)
        self.dir = self.workdir / "log"
        self.dir.mkdir(parents=True, exist_ok=False)
        log_key = SigningKey(LOG_ORIGIN, bytes.fromhex(canonical_digest(["redline-testing-log", str(self.dir)])))
        save_signing_key(log_key, self.dir / "log.key")
        store = SqliteStore(self.dir / "log.db", create=True)
        try:
            Registry.genesis(Log.create(store, log_key), self._key("coordinator"))
        finally:
            store.close()
        self.keys: dict[str, SigningKey] = {"coordinator": self._key("coordinator")}
        self.roles: dict[str, str] = {"coordinator": "coordinator"}
        for name, role in parties:
            self.admit(name, role)
        self.policy = None
        if policy is not None:
            self.publish(policy)

    # --- keys and the registry --------------------------------------------------------------

    def _key(self, name: str) -> SigningKey:
        key = party_key(name)
        path = self.key_file(name)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            save_signing_key(key, path)
        return key

    def key_file(self, name: str) -> Path:
        """The party's private key file (what ``--key`` names on the command line)."""
        return self.workdir / "keys" / f"{name}.key"

    def registry(self) -> Any:
        """A registry over the log, freshly replayed (sees every append, the command line's included)."""
        from redline.cli.registry import open_registry

        return open_registry(self.dir)

    def state(self) -> Any:
        """The engine's state replayed from the log."""
        reg = self.registry()
        try:
            return reg.state
        finally:
            reg.log.store.close()

    @property
    def size(self) -> int:
        """The log's size."""
        from redline.log.sqlite import SqliteStore

        store = SqliteStore(self.dir / "log.db")
        try:
            return store.size()
        finally:
            store.close()

    def violations(self, since: int = 0) -> list[Any]:
        """The violations the engine has found, those whose last evidence entry is ``since`` or later."""
        return [v for v in self.state().violations if v.evidence and v.evidence[-1] >= since]

    # --- submitting -----------------------------------------------------------------------

    def submit(self, what: str, envelope: bytes, *, via: str = "Registry.submit") -> Answer:
        """Submit signed envelope bytes through the registry; the answer says whether it was refused."""
        reg = self.registry()
        try:
            done = reg.submit(envelope)
        except RedlineError as exc:
            return Answer(what, via, True, f"{type(exc).__name__}: {exc}")
        finally:
            reg.log.store.close()
        return Answer(what, via, False, indexes=[done.index])

    def _next_seq(self, party: str) -> int:
        reg = self.registry()
        try:
            return reg.next_seq(party)
        finally:
            reg.log.store.close()

    def say(self, what: str, party: str, cls: type, **fields: Any) -> Answer:
        """Build ``cls`` with the statement builders (party and next seq filled in), sign it and submit it.

        A statement the builders refuse is answered as refused (``via`` says by whom).
        """
        from redline.statements import sign_predicate

        try:
            pred = cls.build(party=party, seq=self._next_seq(party), **fields)
            env = sign_predicate(pred, self.keys[party], log=LOG_ORIGIN).to_json()
        except RedlineError as exc:
            return Answer(what, f"{cls.__name__}.build", True, f"{type(exc).__name__}: {exc}")
        return self.submit(what, env, via=f"{cls.__name__}.build + Registry.submit")

    def forge(self, what: str, party: str, cls: type, **fields: Any) -> Answer:
        """Sign ``cls`` with ``fields`` *unvalidated* (what an attacker's own tools can do) and submit it.

        The predicate is ``model_construct``-ed, turned into an in-toto statement and signed with the
        party's key, without the checks :func:`~redline.statements.sign_predicate` makes: only the
        registry stands between it and the log.
        """
        from redline.crypto.dsse import sign_statement
        from redline.statements.base import to_statement

        pred = cls.model_construct(party=party, seq=self._next_seq(party), **{"log": LOG_ORIGIN, **fields})
        env = sign_statement(to_statement(pred), self.keys[party]).to_json()
        return self.submit(what, env, via="forged envelope + Registry.submit")

    def cli(self, what: str, *args: str | Path) -> Answer:
        """Run ``redline ARGS`` in this process; the answer is refused when it exits non-zero."""
        from click.testing import CliRunner

        from redline.cli.main import cli

        before = self.size
        argv = [str(a) for a in args]
        result = CliRunner().invoke(cli, argv, catch_exceptions=True)
        after = self.size
        via = "redline " + " ".join(shlex.quote(a) for a in argv[:2])
        if result.exit_code != 0:
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                error = f"{type(result.exception).__name__}: {result.exception}"
            else:
                lines = [ln for ln in (getattr(result, "stderr", "") or result.output).splitlines() if ln.strip()]
                error = next((ln for ln in reversed(lines) if ln.startswith("error:")), lines[-1] if lines else "")
                error = f"exit {result.exit_code}: {error}"
            return Answer(what, via, True, error, indexes=list(range(before, after)))
        return Answer(what, via, False, indexes=list(range(before, after)))

    # --- parties and policy ----------------------------------------------------------------

    def admit(self, name: str, role: str, *, jurisdiction: str = "EU") -> Answer:
        """The coordinator admits ``name`` with ``role`` (its deterministic key is saved as a key file)."""
        from redline.statements import Admission

        self.keys[name] = self._key(name)
        self.roles[name] = role
        answer = self.say(f"admit {name} as {role}", "coordinator", Admission, admitted=name,
                          verifier_key=self.keys[name].verifier().to_string(), role=role,
                          display_name=name.upper(), jurisdiction=jurisdiction)
        if answer.refused:
            raise RuntimeError(str(answer))
        return answer

    def publish(self, policy: Any) -> Answer:
        """The coordinator publishes ``policy`` (a ``Policy`` or a pack name)."""
        from redline.policy import load_pack
        from redline.statements import PolicyPublication

        pol = load_pack(policy) if isinstance(policy, str) else policy
        answer = self.say(f"publish policy {pol.id}", "coordinator", PolicyPublication, policy_id=pol.id,
                          version=str(pol.version), document=pol.document(), document_digest=pol.digest,
                          effective_from=now(), supersedes=[])
        if answer.refused:
            raise RuntimeError(str(answer))
        self.policy = pol
        return answer

    # --- the lab's side: the command line ---------------------------------------------------

    def run_start(self, party: str, transcript: Path, model_name: str, declared_flop: float, *,
                  what: str | None = None) -> Answer:
        """``redline run start TRANSCRIPT --key PARTY --model-name M --declared-flop F --submit LOG``."""
        return self.cli(what or f"{party}: run start {Path(transcript).name}", "run", "start", transcript,
                        "--key", self.key_file(party), "--model-name", model_name, "--declared-flop",
                        repr(float(declared_flop)), "--submit", self.dir)

    def run_declare(self, party: str, transcript: Path, run_id: str, model_name: str, *,
                    what: str | None = None) -> Answer:
        """``redline run declare TRANSCRIPT --key PARTY --run-id R --model-name M --submit LOG``
        (a RunProgress at the last checkpoint, then the RunFinish)."""
        return self.cli(what or f"{party}: run declare {Path(transcript).name}", "run", "declare", transcript,
                        "--key", self.key_file(party), "--run-id", run_id, "--model-name", model_name,
                        "--submit", self.dir)

    def declare_run(self, party: str, transcript: Path, model_name: str) -> tuple[Answer, Answer]:
        """``run start`` then ``run declare`` of a closed transcript, as an honest lab does; both must succeed."""
        from redline.transcript.format import SPEC_FILE, load_manifest, read_spec

        spec = read_spec(Path(transcript) / SPEC_FILE)
        m = load_manifest(Path(transcript) / "manifest.json")
        flop = m.flop.per_step * m.commitments.step_count if m.flop is not None else 1.0
        start = self.run_start(party, transcript, model_name, flop)
        declare = self.run_declare(party, transcript, spec.run_id, model_name)
        for answer in (start, declare):
            if answer.refused:
                raise RuntimeError(f"an honest declaration was refused: {answer}")
        return start, declare

    def release(self, party: str, model_name: str, weights: str, *, what: str | None = None) -> Answer:
        """The lab releases ``model_name`` with weights ``weights`` (a sha256 hex)."""
        from redline.statements import Release

        return self.say(what or f"{party}: release {model_name}", party, Release, model_name=model_name,
                        model_digest={"sha256": weights}, released_at=now())

    # --- the auditor's side -----------------------------------------------------------------

    def audit(self, run_party: str, run_id: str, transcript: Path, *, auditor: str = "audit", submit: bool = True,
              **verify: Any) -> Audit:
        """Verify ``run_party/run_id`` from ``transcript`` as ``redline verify run --log --submit`` does.

        The run's RunStart and latest declaration come from the log (signatures and inclusion re-verified),
        the seed from the first signed log checkpoint after the declaration; ``verify`` goes to
        ``verify_transcript`` (default ``workers=1``). Without a declaration on the log (nothing to verify
        against) the transcript is verified on its own, seeded by the log's latest checkpoint.
        """
        from redline.cli.logdir import open_log
        from redline.verify import seed_from_checkpoint, sign_report, verify_transcript
        from redline.verify.logged import logged_run

        verify.setdefault("workers", 1)
        try:
            log = open_log(self.dir, verify=True)
            try:
                logged = logged_run(log, run_id, run_party)
            finally:
                log.store.close()
            start, decl, index, seed, checks, earlier = (logged.start, logged.declaration, logged.index,
                                                          logged.ranges, logged.checks, logged.earlier)
        except RedlineError:
            reg = self.registry()
            try:
                seed = seed_from_checkpoint(reg.log.checkpoint())
            finally:
                reg.log.store.close()
            start, decl, index, checks, earlier = None, None, None, [], []
        result = verify_transcript(transcript, seed=seed, declaration=decl, extra_checks=checks, run_start=start,
                                   run=(run_party, run_id), declaration_index=index, earlier=earlier, **verify)
        audit = Audit(run_party, run_id, Path(transcript), result, index)
        if submit and decl is not None:
            env = sign_report(result, self.keys[auditor], seq=self._next_seq(auditor), run_id=run_id,
                              run_party=run_party, log=LOG_ORIGIN)
            audit.report = self.submit(f"{auditor}: verification report on {run_party}/{run_id} ({result.verdict})",
                                       env.to_json())
        return audit


__all__ = ["Answer", "Audit", "LOG_ORIGIN", "PARTIES", "Scenario", "party_key", "review_policy"]
