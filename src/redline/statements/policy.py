"""Statements about policy: the coordinator publishes a danger-line policy document (the engine interprets it)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import Field, JsonValue, field_validator, model_validator

from redline.crypto.canonical import canonical_digest, canonical_json
from redline.errors import MalformedInput
from redline.statements.base import Label, Name, Predicate, Sha256Hex, Timestamp, json_doubles, register, unique

#: Largest policy document, in bytes of canonical JSON.
MAX_POLICY_BYTES = 48 * 1024
#: Deepest nesting of a policy document.
MAX_POLICY_DEPTH = 32
#: Most policies one publication may supersede.
MAX_SUPERSEDES = 32


def _depth(value: Any) -> int:
    depth, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            depth = max(depth, d)
            if d > MAX_POLICY_DEPTH:
                return d
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return depth


@register
class PolicyPublication(Predicate):
    """The coordinator publishes a version of a danger-line policy, in force from ``effective_from``.

    Policies form a set: every published policy stays in force, with its own lines and parameters, until one
    that names it in ``supersedes`` takes effect. ``supersedes`` lists the full digests of the policies this one
    replaces (empty: it adds to the set).
    """

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:policy-publication:v2"
    KIND: ClassVar[str] = "policy"

    policy_id: Name
    version: Label
    document: dict[str, JsonValue]
    document_digest: Sha256Hex
    effective_from: Timestamp
    supersedes: Annotated[list[Sha256Hex], Field(max_length=MAX_SUPERSEDES)]

    @field_validator("document", mode="after")
    @classmethod
    def _doubles(cls, document: dict[str, Any]) -> dict[str, Any]:
        if _depth(document) > MAX_POLICY_DEPTH:
            raise ValueError(f"nested deeper than {MAX_POLICY_DEPTH} levels")
        # JSON input reads the canonical text of a double like 1e20 as an integer; read it back as the double.
        return json_doubles(document)

    @model_validator(mode="after")
    def _consistent(self) -> PolicyPublication:
        try:
            raw = canonical_json(self.document)
        except MalformedInput as exc:
            raise ValueError(f"field 'document': {exc}") from None
        if len(raw) > MAX_POLICY_BYTES:
            raise ValueError(f"field 'document' is {len(raw)} bytes of canonical JSON, over {MAX_POLICY_BYTES}")
        unique(self.supersedes, lambda d: d, "superseded policy")
        digest = canonical_digest(self.document)
        if digest in self.supersedes:
            raise ValueError("field 'supersedes': a policy cannot supersede itself")
        if digest != self.document_digest:
            raise ValueError(f"field 'document_digest' is not the canonical digest of the document ({digest})")
        return self

    def subjects(self) -> list[dict[str, Any]]:
        return [*super().subjects(),
                {"name": f"policy/{self.policy_id}/{self.version}", "digest": {"sha256": self.document_digest}}]


__all__ = ["MAX_POLICY_BYTES", "MAX_SUPERSEDES", "PolicyPublication"]
