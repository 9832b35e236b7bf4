"""The verifier's settings as one validated object, whose digest goes into the signed report.

A :class:`VerificationPolicy` says how much a verification proves and what it may cost: the detection
target against a fraction of faked *steps*, the compute budget, the extra largest-update segments, the
replay tolerance (bitwise, or calibrated within per-device-class caps) and the FLOP tolerance. It is
composed by the caller (sigstore's ``verify_dsse(bundle, policy)`` style), validated once when built, and
hashed (:meth:`VerificationPolicy.digest`) into the ``VerificationReport`` so that anyone can see which
rules a verdict was reached under. Where a verification runs (device, worker processes, runner) is not
policy and is not part of the digest.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from redline.crypto.canonical import canonical_digest
from redline.errors import MalformedInput
from redline.statements.base import validation_message

#: Default share of the run's steps a verification may re-execute.
DEFAULT_BUDGET = 0.05
#: Default probability of catching a run with ``DEFAULT_FAKE_FRACTION`` of its steps faked.
DEFAULT_TARGET = 0.99
#: The faked share of steps the sample is sized against.
DEFAULT_FAKE_FRACTION = 0.1
#: Counted FLOP must match the declaration within this share: the count is deterministic once every batch
#: shape is counted, so the slack covers float rounding only.
DEFAULT_FLOP_TOLERANCE = 0.01

Fraction = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]


class VerificationPolicy(BaseModel):
    """How a run is verified: detection target, budget, largest-update extras, tolerances.

    - ``target_p_detect`` against ``assumed_fake_fraction`` of the steps faked sizes the sample (draws of steps,
      see :func:`redline.verify.sampling.choose_step_sample`);
    - ``budget``: the largest share of the run's steps the sample may re-execute (``None``: no cap); the sample
      never goes below the floor that catches half the steps faked with probability 0.99;
    - ``largest``: segments with the largest parameter update replayed on top (not counted in P(detect));
    - ``calibrate_segments``: off the bitwise path, honest double replays of seed-chosen segments that set the
      tolerance (``None``: 0 on the CPU, 2 elsewhere);
    - ``flop_tolerance``: counted vs declared FLOP.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    target_p_detect: Fraction = DEFAULT_TARGET
    assumed_fake_fraction: Fraction = DEFAULT_FAKE_FRACTION
    budget: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = DEFAULT_BUDGET
    largest: Annotated[int, Field(ge=0, le=100)] = 2
    calibrate_segments: Annotated[int, Field(ge=0, le=100)] | None = None
    flop_tolerance: Annotated[float, Field(gt=0, le=0.5, allow_inf_nan=False)] = DEFAULT_FLOP_TOLERANCE

    @classmethod
    def of(cls, **settings: Any) -> VerificationPolicy:
        """Build and validate; a bad setting raises ``MalformedInput`` naming it."""
        try:
            return cls(**settings)
        except ValidationError as exc:
            raise MalformedInput(validation_message("verification policy", exc)) from None

    def to_json(self) -> dict[str, Any]:
        """The policy as JSON (every setting written)."""
        return self.model_dump(mode="json")

    def digest(self) -> str:
        """Hex SHA-256 of the policy's RFC 8785 canonical JSON: what the signed report names."""
        return canonical_digest(self.to_json())


__all__ = ["DEFAULT_BUDGET", "DEFAULT_FAKE_FRACTION", "DEFAULT_FLOP_TOLERANCE", "DEFAULT_TARGET",
           "VerificationPolicy"]
