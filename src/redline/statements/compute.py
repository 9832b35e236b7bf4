"""Statements about compute: a lab's chip inventory and its accounting of chip-hours used."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import AfterValidator, Field, model_validator

from redline.compute.chips import get_chip, h100e
from redline.errors import MalformedInput
from redline.statements.base import (
    MAX_SAFE_INT,
    BoundedList,
    Hours,
    Label,
    Model,
    Name,
    Predicate,
    Timestamp,
    register,
    unique,
)


def _known_chip(value: str) -> str:
    try:
        get_chip(value)
    except MalformedInput as exc:
        raise ValueError(str(exc)) from None
    return value


#: A chip model named as in the chip catalog (``redline.compute.chips``), e.g. ``"H100 SXM"``.
ChipModel = Annotated[str, Field(min_length=1, max_length=64,
                                 description="a chip name from redline's chip catalog (compute/chips.csv)"),
                      AfterValidator(_known_chip)]


class ChipCount(Model):
    """A number of chips of one model."""

    chip_model: ChipModel
    count: Annotated[int, Field(ge=1, le=MAX_SAFE_INT)]

    def h100e(self) -> float:
        """H100-equivalents of these chips."""
        return h100e(self.chip_model, self.count)


def _chips_h100e(chips: list[ChipCount]) -> float:
    return sum(c.h100e() for c in chips)


class Cluster(Model):
    """One cluster: where it is and which chips it holds."""

    cluster_id: Name
    site: Label
    chips: Annotated[BoundedList[ChipCount], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_chips(self) -> Cluster:
        unique(self.chips, lambda c: c.chip_model, "chip_model in cluster")
        return self

    def h100e(self) -> float:
        """H100-equivalents of the cluster."""
        return _chips_h100e(self.chips)


@register
class ComputeInventory(Predicate):
    """A lab declares the chips it holds, cluster by cluster, as of a time."""

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:compute-inventory:v1"
    KIND: ClassVar[str] = "compute-inventory"

    as_of: Timestamp
    clusters: BoundedList[Cluster]

    @model_validator(mode="after")
    def _unique_clusters(self) -> ComputeInventory:
        unique(self.clusters, lambda c: c.cluster_id, "cluster_id")
        return self

    def h100e(self) -> float:
        """Total H100-equivalents across all clusters."""
        return sum(c.h100e() for c in self.clusters)

    def chip_totals(self) -> dict[str, int]:
        """Chips held per chip model, across clusters."""
        out: dict[str, int] = {}
        for cluster in self.clusters:
            for c in cluster.chips:
                out[c.chip_model] = out.get(c.chip_model, 0) + c.count
        return out


class RunUsage(Model):
    """Chip-hours one declared run used in the period."""

    run_id: Name
    chip_hours: Hours


@register
class ComputeUsageReport(Predicate):
    """A lab accounts for the chip-hours it used in a period: per declared run, and what no run accounts for."""

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:compute-usage:v1"
    KIND: ClassVar[str] = "compute-usage"

    period_start: Timestamp
    period_end: Timestamp
    runs: BoundedList[RunUsage]
    unaccounted_chip_hours: Hours

    @model_validator(mode="after")
    def _consistent(self) -> ComputeUsageReport:
        if not self.period_start < self.period_end:
            raise ValueError("field 'period_start' must be before 'period_end'")
        unique(self.runs, lambda r: r.run_id, "run_id")
        return self

    def total_chip_hours(self) -> float:
        """All chip-hours reported, declared runs and unaccounted together."""
        return sum(r.chip_hours for r in self.runs) + self.unaccounted_chip_hours


class AttestedUsage(Model):
    """Chips of one model in one cluster, and the chip-hours they ran for the customer in the period."""

    cluster_id: Name
    chip_model: ChipModel
    chip_count: Annotated[int, Field(ge=1, le=MAX_SAFE_INT)]
    chip_hours: Hours

    @model_validator(mode="after")
    def _fits(self) -> AttestedUsage:
        # no more chip-hours than the chips could run in a year: a bound on the input, the period check is the
        # engine's (it knows the period's length)
        if self.chip_hours > self.chip_count * 366 * 24:
            raise ValueError(f"field 'chip_hours': {self.chip_hours:g} chip-hours from {self.chip_count} chips is "
                             "more than a year of every chip")
        return self

    def h100e(self) -> float:
        """H100-equivalents of these chips."""
        return h100e(self.chip_model, self.chip_count)


@register
class ComputeAttestation(Predicate):
    """Who ran how many chips for how long: a provider (cloud or datacenter operator) attests its customer's usage
    in one period, or a lab its own clusters' utilisation (``customer`` is then the lab itself).

    ``period_start`` and ``period_end`` must be one reporting period of the policy in force, aligned as it says;
    ``run_ids`` are the customer's runs the provider saw tagged on its jobs (each must be a declared run);
    ``final`` ends the provider's obligation to attest for this customer after this period.
    """

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:compute-attestation:v1"
    KIND: ClassVar[str] = "compute-attestation"

    customer: Name
    period_start: Timestamp
    period_end: Timestamp
    usage: BoundedList[AttestedUsage]
    run_ids: BoundedList[Name]
    final: bool

    @model_validator(mode="after")
    def _consistent(self) -> ComputeAttestation:
        if not self.period_start < self.period_end:
            raise ValueError("field 'period_start' must be before 'period_end'")
        unique(self.usage, lambda u: (u.cluster_id, u.chip_model), "cluster_id and chip_model")
        unique(self.run_ids, lambda r: r, "run_id")
        return self


__all__ = ["AttestedUsage", "ChipCount", "ChipModel", "Cluster", "ComputeAttestation", "ComputeInventory",
           "ComputeUsageReport", "RunUsage"]
