"""The state of the world as the engine derives it from the log.

Every field is derived from log entries; nothing here is ever the truth on its
own. ``State.to_dict`` is the canonical, JSON-able view whose RFC 8785 digest
two replays of the same log must agree on byte for byte.

The record-shaped values the state keeps in mappings and lists (a policy's status, an attested period, a
finding, ...) are ``TypedDict``s: at run time they are plain dicts, exactly what ``to_dict`` puts in the
canonical view, and the type checker knows every key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict

from redline.crypto.canonical import canonical_digest_spread
from redline.crypto.keys import VerifierKey
from redline.times import DAY_MS

if TYPE_CHECKING:
    from redline.policy.model import Line, Policy


class HeldKey(TypedDict):
    """One key a party held (``Party.key_history``): from the entry after the one that gave it, to the entry
    after the one that rotated or revoked it (None: still its key)."""

    key: str  # the verifier-key string
    from_index: int
    to_index: int | None


#: Where a published policy stands: its ``effective_from`` still ahead, in force, or replaced.
PolicyStatus = Literal["scheduled", "in-force", "superseded"]


class PolicyRecord(TypedDict):
    """A published policy (``State.policies``, by full digest)."""

    policy_id: str
    version: int
    index: int  # the publication's entry
    effective_from_ms: int  # when it takes effect: its effective_from, or the publication's time if later
    supersedes: list[str]  # the digests of the policies it replaces once it takes effect
    status: PolicyStatus
    in_force_index: int | None
    superseded_index: int | None


class IndicatorRecord(TypedDict):
    """The latest value of one indicator on one subject (``State.indicators``, by ``name:subject``)."""

    value: float
    by: str  # the party that stated it
    index: int


class AttestedUsage(TypedDict):
    """One cluster and chip model of an attested period (``AttestedPeriod.usage``, by ``cluster/chip``): the
    largest chip-hours any party attested for it."""

    cluster_id: str
    chip_model: str
    chip_count: int
    chip_hours: float
    by: str
    index: int


class AttestedPeriod(TypedDict):
    """The compute attested for one customer and period (``State.attested``, by ``customer@period start ms``)."""

    customer: str
    period_start_ms: int
    period_end_ms: int
    usage: dict[str, AttestedUsage]
    entries: list[int]  # every attestation of the period
    by: dict[str, int]  # attesting party -> its entry
    #: The entry that found unexplained compute in it during a pause (set once, when it is found).
    paused_violation: NotRequired[int]


class ComputeFinding(TypedDict):
    """An ``unexplained-compute`` finding (``State.findings``, by the attested period's key): the chip-hours
    attested could have delivered more than the customer's declared runs explain."""

    customer: str
    period_start_ms: int
    period_end_ms: int
    chip_hours: float
    capacity_low_flop: float
    capacity_high_flop: float
    declared_flop: float
    unexplained_flop: float
    margin: float
    minimum_flop: float
    evidence: list[int]
    arithmetic: str
    index: int


class ReviewRequirement(TypedDict):
    """A model that needs a pre-release review (``State.review_required``, by model name): the line that set it
    off, its review window and the crossing's entry."""

    line: str
    window_days: float
    index: int


class ReleaseRecord(TypedDict):
    """A release (``State.releases``): ``digest`` the sha256 of its weights (None for another algorithm), ``run``
    the run that finished with them (None: none did)."""

    party: str
    model: str
    index: int
    digest: str | None
    run: str | None


class BaseModelRecord(TypedDict):
    """A registered base model (``State.bases``, by weights digest)."""

    model_name: str
    training_flop: float
    source: str
    party: str  # who registered it
    index: int


class ResumeProposalRecord(TypedDict):
    """A proposal to resume a pause (``Pause.proposals``, by proposal id) and its approvals (party -> entry)."""

    by: str
    index: int
    approvals: dict[str, int]


class ReviewFindingRecord(TypedDict):
    """A finding on a review submission (``Review.findings``)."""

    by: str
    severity: str
    finding: str
    index: int


#: The field names of each record class, worked out once (``_fields_of``).
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _fields_of(record: Any) -> dict[str, Any]:
    """A record's fields as a dict, values shared with the record (``asdict`` without the deep copy)."""
    names = _FIELD_NAMES.get(type(record))
    if names is None:
        names = _FIELD_NAMES[type(record)] = tuple(f.name for f in fields(record))
    return {name: getattr(record, name) for name in names}


@dataclass
class Party:
    """An admitted party: its name, role, current key and last sequence number."""

    name: str
    role: str
    key: VerifierKey
    display_name: str
    jurisdiction: str
    admitted_index: int
    last_seq: int = 0
    revoked: bool = False
    #: Every key the party has held, oldest first (``to_index`` the entry that rotated or revoked it, None for the
    #: current key). ``key_at`` answers which key signed for it when.
    key_history: list[HeldKey] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "key": self.key.to_string(), "display_name": self.display_name,
                "jurisdiction": self.jurisdiction, "admitted_index": self.admitted_index, "last_seq": self.last_seq,
                "revoked": self.revoked, "key_history": [k.copy() for k in self.key_history]}

    def key_at(self, index: int) -> str | None:
        """The key (as its string) that was this party's valid key at log entry ``index``, if any."""
        for k in self.key_history:
            if k["from_index"] <= index and (k["to_index"] is None or index < k["to_index"]):
                return k["key"]
        return None


@dataclass
class Run:
    """A declared training run, the compute figures the log holds for it, and what binds it.

    ``spec_digest`` is the digest of the ``RunSpec`` its RunStart carried (None for a run declared without
    one: such a run's final weights can never be verified); ``base_digest`` the weights it starts from
    (``spec.init.base_model_digest``); ``final_digest`` the sha256 digest of its final weights
    (``RunFinish.final_model_digest``) and ``finish_index`` the RunFinish's entry; ``verified_final`` is
    True once a passing verification report on that RunFinish (entry ``verified_final_index``) verified them.
    """

    party: str
    run_id: str
    model_name: str
    base_model: str | None
    base_model_flop: float | None
    declared_flop: float
    flop_so_far: float = 0.0
    total_flop: float | None = None
    finished: bool = False
    last_step: int = 0
    verified: str | None = None  # verdict of the latest verification report
    indexes: list[int] = field(default_factory=list)
    spec_digest: str | None = None
    base_digest: str | None = None
    final_digest: str | None = None
    finish_index: int | None = None
    verified_final: bool = False
    verified_final_index: int | None = None
    #: ``[first step, last step, entry]`` for each declaration that committed to steps no earlier one did: the
    #: ranges a verifier draws each with the seed of the first checkpoint after that entry.
    seed_ranges: list[list[int]] = field(default_factory=list)
    #: ``[time ms, FLOP reached, entry]`` from the RunStart (0 at ``started_at``), each RunProgress (``as_of``)
    #: and the RunFinish (``finished_at``): how much compute the run declares by when, for the attestation
    #: cross-check (linear between points).
    progress: list[list[float]] = field(default_factory=list)

    @property
    def key(self) -> str:
        """``party/run_id``."""
        return f"{self.party}/{self.run_id}"

    @property
    def compute(self) -> float:
        """The run's compute: the largest of planned, progress and final figures."""
        return max(self.declared_flop, self.flop_so_far, self.total_flop or 0.0)


@dataclass
class Crossing:
    """A danger line crossed, with the evidence behind it."""

    line: str
    metric: str
    scope: str
    subject: str
    party: str
    value: float
    threshold: float
    evidence: str
    consequence: str
    index: int
    time_ms: int
    note: str = ""
    #: The digest of the policy whose line this is.
    policy: str = ""


@dataclass
class Obligation:
    """Something a party must do by a logged-time deadline."""

    kind: str
    party: str
    due_ms: int
    origin_index: int
    ref: str
    met_index: int | None = None
    violated: bool = False


@dataclass
class Violation:
    """A broken rule, with the log indexes that prove it."""

    party: str
    kind: str
    detail: str
    evidence: list[int]
    time_ms: int


@dataclass
class Pause:
    """One coordinated pause: why it started (the crossing at ``trigger_index``) and when (the entry
    ``started_index`` at which the quorum was met), the policy whose parameters govern it, whom it binds and to
    what, and when it ended.

    ``bound`` only grows while the pause lasts, and ``scopes`` (party -> what it is held to: training,
    releases, deployment-scaling) only widens: a commitment made during the pause cannot loosen either.
    ``joined`` is the entry at which each party became bound; ``triggers`` every pause-line crossing the
    pause covers (the first is its trigger; crossings logged during it join it and end with it).
    """

    pause_id: str
    trigger_line: str
    trigger_index: int
    started_ms: int
    bound: list[str]
    ended_ms: int | None = None
    ended_index: int | None = None
    acknowledged: dict[str, int] = field(default_factory=dict)
    proposals: dict[str, ResumeProposalRecord] = field(default_factory=dict)
    policy: str = ""
    started_index: int = 0
    scopes: dict[str, list[str]] = field(default_factory=dict)
    joined: dict[str, int] = field(default_factory=dict)
    #: When each party that joined after the start joined (its usage reports begin with the period it joined in).
    joined_ms: dict[str, int] = field(default_factory=dict)
    triggers: list[int] = field(default_factory=list)
    #: The positions in ``State.crossings`` of the crossings in ``triggers``.
    trigger_positions: list[int] = field(default_factory=list)


@dataclass
class Review:
    """A pre-release review: submission, window, findings and decision."""

    submission_id: str
    party: str
    model_name: str
    submitted_index: int
    submitted_ms: int
    window_days: float
    model_digest: str | None = None  # the sha256 digest of the weights submitted (None: not a sha256 digest)
    findings: list[ReviewFindingRecord] = field(default_factory=list)
    decision: str | None = None
    decision_index: int | None = None
    #: When the decision was logged (a release dated before a clearance was not cleared).
    decision_ms: int | None = None

    @property
    def window_end_ms(self) -> int:
        return self.submitted_ms + int(self.window_days * DAY_MS)


@dataclass
class Commitment:
    """A party's conditional pause commitment to one policy (the latest it made to that policy)."""

    party: str
    policy_digest: str
    pauses: list[str]
    quorum_kind: str
    threshold: float
    expires_ms: int
    index: int


@dataclass
class Rejection:
    """A log entry the engine refused, and why."""

    index: int
    error: str
    message: str


@dataclass
class Event:
    """One line of the pause/compliance timeline."""

    index: int
    time_ms: int
    kind: str
    text: str


@dataclass
class State:
    """Everything the engine derives from a log prefix."""

    origin: str | None = None
    coordinator: str | None = None
    next_index: int = 0
    last_time_ms: int = 0
    parties: dict[str, Party] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # key fingerprint -> party (current keys)
    retired_keys: dict[str, str] = field(default_factory=dict)  # rotated or revoked fingerprints -> party
    #: Every published policy by full digest; status is ``scheduled`` (its effective_from is ahead),
    #: ``in-force`` or ``superseded``.
    policies: dict[str, PolicyRecord] = field(default_factory=dict)
    #: The parsed policies by digest: derived from ``policies``' statements, kept for speed, not in ``to_dict``.
    policy_objects: dict[str, Policy] = field(default_factory=dict, repr=False, compare=False)
    #: The digests of the policies in force, in publication order (derived from ``policies``; in ``to_dict``).
    in_force: list[str] = field(default_factory=list)
    #: Each policy's lines by (metric, scope): derived, kept for speed, not in ``to_dict``.
    line_index: dict[str, dict[tuple[str, str], list[Line]]] = field(default_factory=dict, repr=False, compare=False)
    runs: dict[str, Run] = field(default_factory=dict)  # "party/run_id" -> run
    models: dict[str, str] = field(default_factory=dict)  # model name -> "party/run_id" that trained it
    clusters: dict[str, dict[str, float]] = field(default_factory=dict)  # party -> cluster -> H100e
    indicators: dict[str, IndicatorRecord] = field(default_factory=dict)  # "name:subject" -> latest value
    #: party -> policy digest -> the party's latest commitment to that policy.
    commitments: dict[str, dict[str, Commitment]] = field(default_factory=dict)
    crossings: list[Crossing] = field(default_factory=list)
    crossed: set[tuple[str, str, str]] = field(default_factory=set)  # (policy id, line id, subject): derived
    pending_pause: list[int] = field(default_factory=list)  # positions in crossings awaiting a quorum
    pauses: list[Pause] = field(default_factory=list)
    obligations: list[Obligation] = field(default_factory=list)
    #: Derived, kept for speed, not in ``to_dict``: the obligations that may still be open (a superset: met or
    #: violated ones leave it when a deadline check next looks), a time no open obligation falls due before,
    #: the usage-report obligations opened, as (ref, party), and each run's open RunFinish obligation.
    open_obligations: list[Obligation] = field(default_factory=list, repr=False, compare=False)
    next_due_ms: int = field(default=2**62, repr=False, compare=False)
    usage_opened: set[tuple[str, str]] = field(default_factory=set, repr=False, compare=False)
    run_finish_due: dict[str, Obligation] = field(default_factory=dict, repr=False, compare=False)
    violations: list[Violation] = field(default_factory=list)
    reviews: dict[str, Review] = field(default_factory=dict)  # "party/submission_id" -> review
    #: Attested compute by "customer@period start ms" (the same cluster and chip attested by two parties counts
    #: once, at the larger chip-hours).
    attested: dict[str, AttestedPeriod] = field(default_factory=dict)
    #: Derived, kept for speed, not in ``to_dict``: each customer's keys in ``attested``.
    attested_by_customer: dict[str, list[str]] = field(default_factory=dict, repr=False, compare=False)
    #: ``unexplained-compute`` findings by the same key (a finding disappears once declarations explain it).
    findings: dict[str, ComputeFinding] = field(default_factory=dict)
    #: (customer, cluster) pairs already found unregistered: derived, kept to say it once, not in ``to_dict``.
    unregistered: set[tuple[str, str]] = field(default_factory=set, repr=False, compare=False)
    review_required: dict[str, ReviewRequirement] = field(default_factory=dict)  # model name -> requirement
    releases: list[ReleaseRecord] = field(default_factory=list)
    #: Registered base models by weights digest.
    bases: dict[str, BaseModelRecord] = field(default_factory=dict)
    #: Indexes derived from ``runs`` (kept for speed, not in ``to_dict``): spec digest -> run, final weights
    #: digest -> run, and each transcript root -> (the run that first declared it, that entry).
    spec_runs: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    final_weights: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    roots: dict[str, tuple[str, int]] = field(default_factory=dict, repr=False, compare=False)
    rejected: list[Rejection] = field(default_factory=list)
    timeline: list[Event] = field(default_factory=list)
    #: Set by ``admit`` for the rule checks: the integration time the statement being admitted will get, and the
    #: margin a lower time bound is judged with (a minute before an append, 0 on replay). Not in ``to_dict``.
    judged_at_ms: int = field(default=0, repr=False, compare=False)
    judged_margin_ms: int = field(default=0, repr=False, compare=False)

    @property
    def active_pause(self) -> Pause | None:
        """The pause in force, if any."""
        if self.pauses and self.pauses[-1].ended_ms is None:
            return self.pauses[-1]
        return None

    @property
    def status(self) -> str:
        """normal, paused or resumed."""
        if not self.pauses:
            return "normal"
        return "paused" if self.active_pause else "resumed"

    def to_dict(self, *, copy: bool = True) -> dict[str, Any]:
        """The canonical JSON-able view of the state: a deep copy the caller may change, or (``copy=False``) a view
        whose lists and dicts are the state's own, to be read (or copied, as ``engine.view.with_times`` does)
        and never changed, at a sixth of the cost."""
        return self._view(asdict if copy else _fields_of)

    def _view(self, plain: Callable[[Any], dict[str, Any]], lazy: bool = False) -> dict[str, Any]:
        """The canonical view, each record made a dict by ``plain``; ``lazy``: the lists of records as generators
        (for ``digest``, which writes them one record at a time)."""
        seq: Callable[[Iterator[Any]], Any] = (lambda items: items) if lazy else list
        return {
            "origin": self.origin,
            "coordinator": self.coordinator,
            "next_index": self.next_index,
            "last_time_ms": self.last_time_ms,
            "status": self.status,
            "parties": {n: p.to_dict() for n, p in sorted(self.parties.items())},
            "retired_keys": dict(sorted(self.retired_keys.items())),
            "policies": dict(sorted(self.policies.items())),
            "in_force": list(self.in_force),
            "runs": {k: {**plain(r), "compute": r.compute} for k, r in sorted(self.runs.items())},
            "models": dict(sorted(self.models.items())),
            "clusters": {p: dict(sorted(c.items())) for p, c in sorted(self.clusters.items())},
            "indicators": dict(sorted(self.indicators.items())),
            "commitments": {p: {d: plain(c) for d, c in sorted(cs.items())}
                            for p, cs in sorted(self.commitments.items())},
            "crossings": seq(plain(c) for c in self.crossings),
            "pending_pause": list(self.pending_pause),
            "pauses": seq(plain(p) for p in self.pauses),
            "obligations": seq(plain(o) for o in self.obligations),
            "violations": seq(plain(v) for v in self.violations),
            "reviews": {k: plain(r) for k, r in sorted(self.reviews.items())},
            "attested": dict(sorted(self.attested.items())),
            "findings": dict(sorted(self.findings.items())),
            "review_required": dict(sorted(self.review_required.items())),
            "releases": list(self.releases),
            "bases": dict(sorted(self.bases.items())),
            "rejected": seq(plain(r) for r in self.rejected),
            "timeline": seq(plain(e) for e in self.timeline),
        }

    def digest(self) -> str:
        """Hex SHA-256 of the canonical state: equal for every replay of the same log.

        That of ``to_dict()``'s canonical JSON, hashed one record at a time (``canonical_digest_spread``) from a
        view that shares the records' lists and dicts instead of copying them (canonicalisation copies what it
        writes, so nothing of the state is changed): a quarter of the time, and no copy of the whole state.
        """
        return canonical_digest_spread(self._view(_fields_of, lazy=True), spread=2)
