"""Builders for engine and registry tests: deterministic keys, a controllable clock, a real log, ``sub``.

A ``World`` is a real ``Registry`` over a real ``Log`` on SQLite (in a test's
``tmp_path``) whose clock the test sets by hand, so logged times — and with them
every deadline — are exactly what the test says. ``World.sub(party, Cls, **fields)``
fills ``party`` and ``seq``, signs with the party's key and submits.
``World.envelope`` does the same without submitting (for bad-input tests), and
``forge_envelope`` signs any statement object with any key (for forgeries).

``EntryWriter`` builds engine ``Entry`` lists with no log at all, for replay
properties: it signs statements and stamps them with caller-chosen times.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from redline.crypto.canonical import canonical_digest
from redline.crypto.dsse import sign_statement
from redline.crypto.keys import SigningKey
from redline.engine import Entry, State
from redline.log.service import Log
from redline.log.sqlite import SqliteStore
from redline.policy import Policy, load_pack
from redline.registry import Registry, Submitted
from redline.statements import (
    Admission,
    Check,
    ChipCount,
    Cluster,
    ComputeInventory,
    CountQuorum,
    Declaration,
    Environment,
    FactoryRef,
    FlopEstimates,
    Genesis,
    Init,
    PolicyPublication,
    Predicate,
    RunSpec,
    TranscriptCommitments,
    sign_predicate,
)

#: A fixed start of logged time: 2027-01-15T08:00:00Z in milliseconds.
T0_MS = 1_800_000_000_000
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
H64 = "ab" * 32
H64B = "cd" * 32
H64C = "ef" * 32
LOG_NAME = "redline.example/log"


def key(name: str) -> SigningKey:
    """A deterministic Ed25519 key per name (the seed is the SHA-256 of the canonical name)."""
    return SigningKey(name, bytes.fromhex(canonical_digest(["test-key", name])))


def utc(ms: int) -> datetime:
    """A logged time (ms since the epoch) as an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class Clock:
    """The log's clock, set by the test: ``clock()`` returns the current time in milliseconds."""

    def __init__(self, start_ms: int = T0_MS) -> None:
        self.now_ms = start_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, *, ms: int = 0, hours: float = 0, days: float = 0) -> int:
        """Move time forward; return the new time."""
        self.now_ms += ms + int(hours * HOUR_MS) + int(days * DAY_MS)
        return self.now_ms

    def set(self, ms: int) -> int:
        """Set the time (the log never goes backwards whatever this says)."""
        self.now_ms = ms
        return ms


def commits(step_count: int = 100, *, run: str = "") -> TranscriptCommitments:
    """Transcript commitments of ``run`` at ``step_count`` steps: each (run, step count) has its own three roots,
    as real roots domain-separated by the run's spec have (the engine refuses roots another run declared)."""
    def root(part: str) -> str:
        return canonical_digest(["test-roots", run, part, step_count])

    return TranscriptCommitments(steps_root=root("steps"), data_root=root("data"),
                                 checkpoints_root=root("checkpoints"), step_count=step_count)


def weights(name: str) -> str:
    """A deterministic model weights digest (sha256 hex) per name."""
    return canonical_digest(["test-weights", name])


def factory(name: str) -> FactoryRef:
    """A well-formed pinned factory reference (nothing is ever imported by the engine)."""
    return FactoryRef(name=name, distribution="redline-test-models", version="1.0", files_digest=H64,
                      kwargs={"width": 8})


def cpu_environment() -> Environment:
    """A CPU recording environment; any machine-description field not set here (all optional) is null."""
    known: dict[str, Any] = {"python": "3.12.0", "torch": "2.5.0", "platform": "linux-x86_64", "device_type": "cpu",
                             "cpu_capability": "AVX2", "deterministic_algorithms": True, "num_threads": 1}
    return Environment(**{name: known.get(name) for name in Environment.model_fields})


def run_spec(party: str, run_id: str, *, seed: int | None = 0, base: str | None = None,
             parameter_count: int = 1000) -> RunSpec:
    """A minimal valid ``RunSpec`` for ``party/run_id``: a fresh initialisation from ``seed``, or from the
    weights ``base`` (a sha256 hex) when given."""
    init = Init(kind="base", base_model_digest=base) if base is not None else Init(kind="fresh", seed=seed)
    return RunSpec(format="redline-run-spec/v1", party=party, run_id=run_id, redline_version="0.0.test",
                   environment=cpu_environment(),
                   declaration=Declaration(model_factory=factory("tiny"), optimizer=factory("sgd"),
                                           notes=["no data source: a test spec"]),
                   init=init, parameter_count=parameter_count, checkpoint_every=10, digest_algorithms=["sha256"])


def h100(count: int) -> list[ChipCount]:
    """``count`` H100 SXM chips."""
    return [ChipCount(chip_model="H100 SXM", count=count)]


def inventory_fields(count: int, *, cluster_id: str = "c1", when: datetime | None = None) -> dict[str, Any]:
    """Fields of a one-cluster ``ComputeInventory`` of ``count`` H100s."""
    return {"as_of": when or utc(T0_MS),
            "clusters": [Cluster(cluster_id=cluster_id, site="Somewhere", chips=h100(count))]}


def run_start_fields(run_id: str, model: str, flop: float, *, base_model: str | None = None,
                     base_model_flop: float | None = None, when: datetime | None = None,
                     spec: RunSpec | None = None) -> dict[str, Any]:
    """Fields of a ``RunStart`` declaring ``flop`` planned FLOP (6ND, no hardware listed); with ``spec``, bound to
    it (checkpoint 0 is the base's weights for a base initialisation, else a digest derived from the spec)."""
    init_digest = None
    if spec is not None:
        init_digest = spec.init.base_model_digest or weights(f"init/{spec.party}/{spec.run_id}")
    return {"run_id": run_id, "model_name": model, "declared_flop": flop, "flop_method": "6ND", "hardware": [],
            "base_model": base_model, "base_model_flop": base_model_flop, "started_at": when or utc(T0_MS),
            "spec": spec, "init_model_digest": init_digest}


def progress_fields(run_id: str, step: int, flop: float, *, spec: RunSpec | None = None,
                    run: str | None = None, when: datetime | None = None) -> dict[str, Any]:
    """Fields of a ``RunProgress`` of ``run_id`` at ``step`` (roots of ``run``, default the run id)."""
    return {"run_id": run_id, "step": step, "flop_so_far": flop, "commitments": commits(step, run=run or run_id),
            "spec_digest": None if spec is None else spec.digest(), "as_of": when or utc(T0_MS)}


def finish_fields(run_id: str, flop: float, final_weights: str, *, spec: RunSpec | None = None, steps: int = 100,
                  run: str | None = None, when: datetime | None = None) -> dict[str, Any]:
    """Fields of a ``RunFinish`` of ``run_id``: ``flop`` in total, final weights ``final_weights`` (sha256 hex)."""
    return {"run_id": run_id, "total_flop": flop, "flop_estimates": FlopEstimates(six_nd=flop),
            "estimates_disagree": False, "final_model_digest": {"sha256": final_weights},
            "commitments": commits(steps, run=run or run_id),
            "spec_digest": None if spec is None else spec.digest(),
            "manifest_digest": None if spec is None else weights(f"manifest/{run_id}"),
            "finished_at": when or utc(T0_MS)}


def report_fields(run_party: str, run_id: str, declaration_index: int | None, verdict: str = "pass"
                  ) -> dict[str, Any]:
    """Fields of a ``VerificationReport`` on ``run_party/run_id``'s declaration at ``declaration_index``."""
    check = {"pass": Check(name="segment-replay", passed=True, detail=""),
             "fail": Check(name="segment-replay", passed=False, detail="step 7 diverges"),
             "inconclusive": Check(name="segment-replay", passed=False, inconclusive=True,
                                   detail="recorded on cuda, replayed on cpu")}[verdict]
    return {"run_id": run_id, "run_party": run_party, "checks": [check], "verdict": verdict,
            "compute_spent_flop": 1e18, "sample_seed": "00ff", "segments_checked": 4,
            "failing_step": 7 if verdict == "fail" else None, "declaration_index": declaration_index}


def publication_fields(policy: Policy, *, when: datetime | None = None,
                       supersedes: Sequence[str] = ()) -> dict[str, Any]:
    """Fields of a ``PolicyPublication`` of ``policy`` in its normal form (superseding the digests given)."""
    return {"policy_id": policy.id, "version": str(policy.version), "document": policy.document(),
            "document_digest": policy.digest, "effective_from": when or utc(T0_MS), "supersedes": list(supersedes)}


def commitment_fields(policy: Policy, threshold: int = 3, *, pauses: Sequence[str] = ("training", "releases"),
                      days: int = 365) -> dict[str, Any]:
    """Fields of a count-quorum ``Commitment`` to ``policy``."""
    return {"policy_digest": policy.digest, "pauses": list(pauses),
            "quorum": CountQuorum(kind="count", threshold=threshold),
            "expires_at": utc(T0_MS) + timedelta(days=days)}


def forge_envelope(statement: dict[str, Any], signer: SigningKey) -> bytes:
    """Sign any in-toto statement object with any key (no predicate checks): for forgeries."""
    return sign_statement(statement, signer).to_json()


@dataclass
class World:
    """A registry over a real SQLite log with a hand-set clock, and the keys of its parties."""

    path: Path
    clock: Clock
    log: Log
    registry: Registry
    keys: dict[str, SigningKey] = field(default_factory=dict)

    @property
    def state(self) -> State:
        """The registry's live state."""
        return self.registry.state

    def pred(self, party: str, cls: type[Predicate], *, seq: int | None = None, **fields: Any) -> Predicate:
        """A validated predicate of ``cls`` for ``party`` with its next sequence number (or ``seq``)."""
        seq = self.registry.next_seq(party) if seq is None else seq
        return cls.build(party=party, seq=seq, **{"log": self.log.origin, **fields})

    def envelope(self, party: str, cls: type[Predicate], *, seq: int | None = None, signer: str | None = None,
                 **fields: Any) -> bytes:
        """The signed envelope bytes ``sub`` would submit (not submitted)."""
        pred = self.pred(party, cls, seq=seq, **fields)
        return sign_predicate(pred, self.keys[signer or party]).to_json()

    def sub(self, party: str, cls: type[Predicate], **fields: Any) -> Submitted:
        """Fill ``party`` and ``seq``, sign with the party's key and submit; return the accepted entry."""
        return self.registry.submit(self.envelope(party, cls, **fields))

    def admit(self, name: str, role: str, *, jurisdiction: str = "EU") -> Submitted:
        """The coordinator admits ``name`` with ``role`` (a deterministic key is made for it)."""
        self.keys[name] = key(name)
        return self.sub("coordinator", Admission, admitted=name, verifier_key=self.keys[name].verifier().to_string(),
                        role=role, display_name=name.upper(), jurisdiction=jurisdiction)

    def publish(self, policy: Policy | str, *, supersedes: Sequence[str] = (),
                effective_from: datetime | None = None) -> Submitted:
        """The coordinator publishes a policy (a pack name or a ``Policy``), superseding the digests given."""
        pol = load_pack(policy) if isinstance(policy, str) else policy
        return self.sub("coordinator", PolicyPublication,
                        **publication_fields(pol, when=effective_from or utc(self.clock()), supersedes=supersedes))

    def snapshot(self) -> tuple[int, bytes, int, str]:
        """What a refused submission must leave unchanged: log size, latest checkpoint, stored size, state."""
        return self.log.size, self.log.checkpoint(), self.log.store.size(), self.state.digest()

    def entries(self) -> list[Entry]:
        """The log's entries as the engine sees them."""
        return [Entry(i, t, e) for i, t, e in self.log.entries()]


def make_world(tmp_path: Path, parties: Iterable[tuple[str, str]] = (), *, start_ms: int = T0_MS,
               origin: str = LOG_NAME) -> World:
    """A fresh log (named ``origin``) with its genesis, then the given ``(name, role)`` parties admitted in order."""
    clock = Clock(start_ms)
    path = tmp_path / "log.db"
    log = Log.create(SqliteStore(path, create=True), key(origin), clock=clock)
    coordinator = key("coordinator")
    registry = Registry.genesis(log, coordinator)
    world = World(path, clock, log, registry, {"coordinator": coordinator})
    for name, role in parties:
        world.admit(name, role)
    return world


def labs_world(tmp_path: Path, policy: str | Policy | None = "coordinated-pause",
               inventories: dict[str, int] | None = None) -> World:
    """Three labs, a regulator and an auditor admitted; ``policy`` published; inventories declared."""
    world = make_world(tmp_path, [("lab-a", "lab"), ("lab-b", "lab"), ("lab-c", "lab"), ("gov", "regulator"),
                                  ("audit", "auditor")])
    if policy is not None:
        world.publish(policy)
    for lab, count in (inventories or {}).items():
        world.sub(lab, ComputeInventory, **inventory_fields(count))
    return world


# --- logs without a log: entry lists for replay properties ------------------------------


class EntryWriter:
    """Builds an engine entry list by hand: signed statements (or any bytes) at chosen logged times."""

    def __init__(self, start_ms: int = T0_MS) -> None:
        self.entries: list[Entry] = []
        self.time_ms = start_ms
        self.origin: str | None = None  # the log the statements are for: the origin its genesis names

    def add(self, data: bytes, *, after_ms: int = 0) -> Entry:
        """Append ``data`` ``after_ms`` after the previous entry."""
        self.time_ms += after_ms
        entry = Entry(len(self.entries), self.time_ms, data)
        self.entries.append(entry)
        return entry

    def signed(self, pred: Predicate, signer: SigningKey, *, after_ms: int = 0) -> Entry:
        """Append ``pred`` signed by ``signer`` (its key name must be the party), for the log of the genesis."""
        if isinstance(pred, Genesis):
            self.origin = pred.origin
        return self.add(sign_predicate(pred, signer, log=self.origin).to_json(), after_ms=after_ms)


# --- replay in another process ------------------------------------------------------------

_REPLAY_SCRIPT = """
import base64, json, sys
from redline.engine import Entry, replay
for line in open(sys.argv[1], encoding="utf-8"):
    log = json.loads(line)
    state = replay(Entry(i, t, base64.b64decode(d)) for i, t, d in log)
    print(state.digest())
"""


def dump_logs(logs: Sequence[Sequence[Entry]], path: Path) -> Path:
    """Write entry lists as JSON lines of ``[index, time_ms, base64(data)]`` triples."""
    with path.open("w", encoding="utf-8") as f:
        for entries in logs:
            f.write(json.dumps([[e.index, e.time_ms, base64.b64encode(e.data).decode()] for e in entries]) + "\n")
    return path


def digests_in_fresh_process(logs: Sequence[Sequence[Entry]], tmp_path: Path, *, hash_seed: str = "4242") -> list[str]:
    """Replay each log in a new Python process (another hash seed) and return the state digests it prints."""
    path = dump_logs(logs, tmp_path / "logs.jsonl")
    env = {"PYTHONHASHSEED": hash_seed, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", _REPLAY_SCRIPT, str(path)], capture_output=True, text=True,
                         env=env, timeout=120, check=False)
    if out.returncode != 0:
        raise AssertionError(f"replay in a fresh process failed:\n{out.stderr}")
    return out.stdout.split()
