"""Statements about parties: the log's genesis, admission of a party, key rotation and revocation."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import model_validator

from redline.statements.base import (
    Label,
    NonEmptyText,
    PartyName,
    Predicate,
    Sha256Hex,
    VerifierKeyString,
    register,
    verifier_key_string,
)

Role = Literal["lab", "auditor", "regulator", "witness", "coordinator", "provider"]
ROLES: tuple[str, ...] = ("lab", "auditor", "regulator", "witness", "coordinator", "provider")


def _key_subject(party: str, key_string: str) -> dict[str, Any]:
    return {"name": f"key/{party}", "digest": {"sha256": verifier_key_string(key_string).fingerprint}}


@register
class Genesis(Predicate):
    """The log's first entry: it names the log's origin and the coordinator's key, the root of all trust."""

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:genesis:v1"
    KIND: ClassVar[str] = "genesis"

    origin: Label
    coordinator: PartyName
    coordinator_key: VerifierKeyString

    @model_validator(mode="after")
    def _consistent(self) -> Genesis:
        if self.coordinator != self.party:
            raise ValueError(f"field 'coordinator' ({self.coordinator!r}) must be the speaking party "
                             f"({self.party!r}): the coordinator signs the genesis")
        name = verifier_key_string(self.coordinator_key).name
        if name != self.coordinator:
            raise ValueError(f"field 'coordinator_key' is named {name!r}, not the coordinator {self.coordinator!r}")
        return self

    def subjects(self) -> list[dict[str, Any]]:
        return [*super().subjects(), _key_subject(self.coordinator, self.coordinator_key)]


@register
class Admission(Predicate):
    """The coordinator admits a party: its key, its role, and who it is."""

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:admission:v1"
    KIND: ClassVar[str] = "admission"

    admitted: PartyName
    verifier_key: VerifierKeyString
    role: Role
    display_name: Label
    jurisdiction: Label

    @model_validator(mode="after")
    def _consistent(self) -> Admission:
        name = verifier_key_string(self.verifier_key).name
        if name != self.admitted:
            raise ValueError(f"field 'verifier_key' is named {name!r}, not the admitted party {self.admitted!r}")
        return self

    def subjects(self) -> list[dict[str, Any]]:
        return [*super().subjects(), _key_subject(self.admitted, self.verifier_key)]


@register
class KeyRotation(Predicate):
    """A party replaces its key: from this entry on, its statements are signed by the new key."""

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:key-rotation:v1"
    KIND: ClassVar[str] = "key-rotation"

    new_verifier_key: VerifierKeyString

    @model_validator(mode="after")
    def _consistent(self) -> KeyRotation:
        name = verifier_key_string(self.new_verifier_key).name
        if name != self.party:
            raise ValueError(f"field 'new_verifier_key' is named {name!r}, not the party {self.party!r}")
        return self

    def subjects(self) -> list[dict[str, Any]]:
        return [*super().subjects(), _key_subject(self.party, self.new_verifier_key)]


@register
class KeyRevocation(Predicate):
    """A key is revoked (by its party or the coordinator): nothing it signs from this entry on counts."""

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:key-revocation:v1"
    KIND: ClassVar[str] = "key-revocation"

    revoked_party: PartyName
    key_fingerprint: Sha256Hex
    reason: NonEmptyText

    def subjects(self) -> list[dict[str, Any]]:
        return [*super().subjects(),
                {"name": f"key/{self.revoked_party}", "digest": {"sha256": self.key_fingerprint}}]


__all__ = ["ROLES", "Admission", "Genesis", "KeyRevocation", "KeyRotation", "Role"]
