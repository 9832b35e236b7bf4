"""Danger-line policies: a declarative YAML document naming lines, their evidence and consequences.

Each line draws a comparator and a value on a metric (``redline.policy.metrics``)
within a scope (a run, a model lineage, a party, a cluster), names the weakest
evidence that counts (``declared`` by the party itself, ``attested`` by an auditor
or regulator, or ``verified`` by a passing verification report) and a consequence:

- ``pause``: the coordinated pause starts, for parties whose commitments are in force;
- ``review``: the model needs a pre-release review of ``window_days`` before release;
- ``notify``: the party must notify within ``deadline_days`` (its own declaration counts);
- ``prohibit``: the crossing itself is a violation by the party;
- ``flag``: recorded and shown, no obligation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from redline.crypto.canonical import canonical_digest
from redline.errors import InputTooLarge, InvalidPolicy
from redline.policy.metrics import METRICS, SCOPES

MAX_POLICY_BYTES = 48 * 1024

Comparator = Literal[">", ">=", "<", "<="]
Evidence = Literal["declared", "attested", "verified"]
EVIDENCE_STRENGTH = {"declared": 0, "attested": 1, "verified": 2}
Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")]
Text = Annotated[str, Field(max_length=2000)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Consequence(_Strict):
    """What crossing a line sets off."""

    kind: Literal["pause", "review", "notify", "prohibit", "flag"]
    window_days: Annotated[float, Field(ge=0, le=3650)] | None = None
    deadline_days: Annotated[float, Field(ge=0, le=3650)] | None = None

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> Consequence:
        if self.kind == "review" and self.window_days is None:
            raise ValueError("a review consequence needs window_days")
        if self.kind == "notify" and self.deadline_days is None:
            raise ValueError("a notify consequence needs deadline_days")
        if self.kind != "review" and self.window_days is not None:
            raise ValueError(f"window_days only applies to review, not {self.kind}")
        if self.kind != "notify" and self.deadline_days is not None:
            raise ValueError(f"deadline_days only applies to notify, not {self.kind}")
        return self


class Line(_Strict):
    """One danger line."""

    id: Ident
    title: Annotated[str, Field(min_length=1, max_length=200)]
    metric: str
    unit: str
    comparator: Comparator
    value: float
    scope: str
    evidence: Evidence = "declared"
    consequence: Consequence
    source: Annotated[str, Field(min_length=1, max_length=2000)]

    @field_validator("value")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("value must be finite")
        return v

    @model_validator(mode="after")
    def _known_metric(self) -> Line:
        metric = METRICS.get(self.metric)
        if metric is None:
            raise ValueError(f"field 'metric': unknown metric {self.metric!r} (known: {', '.join(sorted(METRICS))})")
        if self.unit != metric.unit:
            raise ValueError(f"field 'unit': metric {self.metric!r} is measured in {metric.unit!r}, "
                             f"not {self.unit!r}")
        if self.scope not in SCOPES:
            raise ValueError(f"field 'scope': unknown scope {self.scope!r} (known: {', '.join(SCOPES)})")
        if self.scope not in metric.scopes:
            raise ValueError(f"field 'scope': metric {self.metric!r} applies to scope(s) {', '.join(metric.scopes)}, "
                             f"not {self.scope!r}")
        return self

    def crossed_by(self, value: float) -> bool:
        """Whether ``value`` is on the far side of the line."""
        c = self.comparator
        return (value > self.value if c == ">" else value >= self.value if c == ">="
                else value < self.value if c == "<" else value <= self.value)


class ResumeQuorum(_Strict):
    """Who must approve a resume proposal to end a pause.

    The approvals of the pause's bound parties count by number (``count``) or by the H100-equivalents their
    latest inventories declare (``compute-share``); the pause ends once their share is *more than*
    ``more_than``. Each role in ``also_required`` (regulator, coordinator) must approve too, by at least one
    admitted party of that role.
    """

    kind: Literal["count", "compute-share"] = "count"
    more_than: Annotated[float, Field(ge=0, lt=1)] = 0.5
    also_required: Annotated[list[Literal["regulator", "coordinator"]], Field(max_length=2)] = []

    @field_validator("also_required")
    @classmethod
    def _unique_roles(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("a role appears twice")
        return v


class AttestationParameters(_Strict):
    """How provider and self-hosted compute attestations are judged (``docs/guides/provider.md``).

    Attestations cover one period of ``period_days`` each, aligned on the Unix epoch; whoever attested a
    customer's compute once owes one per period, within ``grace_days`` of its end, until it attests a ``final``
    one. The compute attested chip-hours could have delivered is chip-hours × the chip's dense BF16 peak × a
    utilisation between ``utilisation_low`` and ``utilisation_high``; when even the low end exceeds the compute
    the customer's declared runs explain by more than ``unexplained_margin`` (a fraction) and by at least
    ``unexplained_min_flop`` (None: the lowest run-scope training-compute line of the policies in force), the
    state shows an ``unexplained-compute`` finding.
    """

    period_days: Annotated[float, Field(ge=1, le=366)] = 7
    grace_days: Annotated[float, Field(ge=0, le=366)] = 7
    utilisation_low: Annotated[float, Field(ge=0, le=1)] = 0.2
    utilisation_high: Annotated[float, Field(gt=0, le=1)] = 0.6
    unexplained_margin: Annotated[float, Field(ge=0, le=100)] = 0.1
    unexplained_min_flop: Annotated[float, Field(ge=0, le=1e35)] | None = None

    @model_validator(mode="after")
    def _band(self) -> AttestationParameters:
        if self.utilisation_low > self.utilisation_high:
            raise ValueError("utilisation_low is above utilisation_high")
        return self


class Parameters(_Strict):
    """Obligations during a pause, the resume quorum, review defaults and the bounds on statement times."""

    ack_window_hours: Annotated[float, Field(gt=0, le=24 * 365)] = 72
    #: At least an hour: the engine opens one reporting period per elapsed period of a pause.
    usage_report_period_days: Annotated[float, Field(ge=1 / 24, le=365)] = 7
    paused_run_flop_limit: Annotated[float, Field(ge=0, le=1e35)] = 0
    review_window_days: Annotated[float, Field(ge=0, le=3650)] = 30
    #: A run that declared progress must declare its RunFinish within this many days of its last RunProgress:
    #: only a verified RunFinish makes a run's compute and weights verified, so a run may not stay open forever.
    run_finish_deadline_days: Annotated[float, Field(gt=0, le=3650)] = 90
    #: A time in a statement may be at most this far ahead of the log's integration time (clocks differ a little;
    #: a statement dated in the future would let a lab pre-date its obligations).
    max_clock_skew_minutes: Annotated[float, Field(ge=0, le=24 * 60)] = 5
    #: When something happened (a run started or finished, a release, an evaluation, an inventory's date) may be
    #: at most this far behind the integration time.
    max_backdating_days: Annotated[float, Field(gt=0, le=36500)] = 366
    #: Who ends a pause this policy started.
    resume_quorum: ResumeQuorum = ResumeQuorum()
    #: How compute attestations by providers (and labs, for their own clusters) are judged.
    compute_attestation: AttestationParameters = AttestationParameters()


class Policy(_Strict):
    """A danger-line policy: identity, sources, parameters and lines."""

    id: Ident
    version: Annotated[int, Field(ge=1, le=10**6)]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    source: Text
    parameters: Parameters = Parameters()
    lines: Annotated[list[Line], Field(min_length=1, max_length=200)]

    @model_validator(mode="after")
    def _unique_ids(self) -> Policy:
        seen: set[str] = set()
        for line in self.lines:
            if line.id in seen:
                raise ValueError(f"line id {line.id!r} appears twice")
            seen.add(line.id)
        return self

    def document(self) -> dict[str, Any]:
        """The policy as the JSON object that is published and hashed."""
        return self.model_dump(mode="json")

    @property
    def digest(self) -> str:
        """Hex SHA-256 of the canonical JSON document: what commitments name."""
        return canonical_digest(self.document())

    def line(self, line_id: str) -> Line:
        """The line with this id."""
        for line in self.lines:
            if line.id == line_id:
                return line
        raise InvalidPolicy(f"policy {self.id!r} has no line {line_id!r}")


def _errors_to_message(where: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(document)"
        parts.append(f"{loc}: {str(err['msg']).removeprefix('Value error, ')}")
    return f"{where}: " + "; ".join(parts)


def policy_from_document(doc: Any, *, where: str = "policy") -> Policy:
    """Validate a policy document (already parsed JSON or YAML)."""
    if not isinstance(doc, dict):
        raise InvalidPolicy(f"{where}: a policy must be a mapping")
    try:
        return Policy.model_validate(doc)
    except ValidationError as exc:
        raise InvalidPolicy(_errors_to_message(where, exc)) from exc


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy YAML (or JSON) file."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_POLICY_BYTES:
        raise InputTooLarge(f"{path} is {size} bytes, over the policy limit of {MAX_POLICY_BYTES}", size=size,
                            limit=MAX_POLICY_BYTES, path=str(path))
    try:
        doc = yaml.safe_load(path.read_text("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InvalidPolicy(f"{path}: not valid YAML: {exc}") from exc
    except ValueError as exc:  # a scalar YAML recognises but cannot build: a 13th month, a 5,000-digit integer
        raise InvalidPolicy(f"{path}: a value in the YAML cannot be read: {exc}") from None
    except RecursionError:
        raise InvalidPolicy(f"{path}: nested too deeply to be a policy") from None
    return policy_from_document(doc, where=str(path))
