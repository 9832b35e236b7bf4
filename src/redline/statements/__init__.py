"""The statement vocabulary: every redline fact as a strict, bounded in-toto predicate (pure).

Each family lives in its own module and registers its predicate types in
``PREDICATE_TYPES`` (URN → model). :func:`to_statement` / :func:`parse_statement`
convert between models and in-toto Statement v1 objects; :func:`sign_predicate` /
:func:`open_envelope` put them in and take them out of signed DSSE envelopes.
"""

from redline.statements.base import (
    PREDICATE_KINDS,
    PREDICATE_TYPES,
    Predicate,
    open_envelope,
    open_predicate,
    parse_payload,
    parse_payload_canonical,
    parse_predicate,
    parse_statement,
    predicate_digest,
    register,
    sign_predicate,
    to_statement,
)
from redline.statements.compute import (
    AttestedUsage,
    ChipCount,
    Cluster,
    ComputeAttestation,
    ComputeInventory,
    ComputeUsageReport,
    RunUsage,
)
from redline.statements.evals import EvaluationResult
from redline.statements.indicators import Indicator
from redline.statements.parties import ROLES, Admission, Genesis, KeyRevocation, KeyRotation
from redline.statements.pause import (
    Commitment,
    ComputeShareQuorum,
    CountQuorum,
    PauseAcknowledgement,
    ResumeApproval,
    ResumeProposal,
)
from redline.statements.policy import PolicyPublication
from redline.statements.review import Release, ReviewDecision, ReviewFinding, ReviewSubmission
from redline.statements.runs import (
    BaseModelRegistration,
    DataSourceRef,
    Declaration,
    Environment,
    FactoryRef,
    FlopEstimates,
    Init,
    RunFinish,
    RunProgress,
    RunSpec,
    RunStart,
    TranscriptCommitments,
)
from redline.statements.verification import Check, VerificationReport

__all__ = [
    "PREDICATE_KINDS", "PREDICATE_TYPES", "ROLES",
    "Admission", "AttestedUsage", "BaseModelRegistration", "Check", "ChipCount", "Cluster", "Commitment",
    "ComputeAttestation", "ComputeInventory",
    "ComputeShareQuorum", "ComputeUsageReport", "CountQuorum", "DataSourceRef", "Declaration", "Environment",
    "EvaluationResult", "FactoryRef", "FlopEstimates", "Genesis", "Indicator", "Init", "KeyRevocation",
    "KeyRotation", "PauseAcknowledgement", "PolicyPublication", "Predicate", "Release", "ResumeApproval",
    "ResumeProposal", "ReviewDecision", "ReviewFinding", "ReviewSubmission", "RunFinish", "RunProgress", "RunSpec",
    "RunStart", "RunUsage", "TranscriptCommitments", "VerificationReport",
    "open_envelope", "open_predicate", "parse_payload", "parse_payload_canonical", "parse_predicate",
    "parse_statement", "predicate_digest", "register", "sign_predicate", "to_statement",
]
