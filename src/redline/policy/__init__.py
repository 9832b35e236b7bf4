"""Danger-line policies and the built-in packs (pure: no I/O beyond reading packaged YAML)."""

from __future__ import annotations

from importlib import resources

import yaml

from redline.errors import InvalidPolicy
from redline.policy.metrics import METRICS, Metric
from redline.policy.model import (
    Consequence,
    Line,
    Parameters,
    Policy,
    ResumeQuorum,
    load_policy,
    policy_from_document,
)

PACKS = ("eu-ai-act", "ca-sb53", "ny-raise", "miri-draft", "ai-rnd", "pre-release-review", "coordinated-pause")


def load_pack(name: str) -> Policy:
    """A built-in policy pack by name."""
    if name not in PACKS:
        raise InvalidPolicy(f"unknown policy pack {name!r} (packs: {', '.join(PACKS)})")
    text = resources.files("redline.policy").joinpath("packs", f"{name}.yaml").read_text("utf-8")
    return policy_from_document(yaml.safe_load(text), where=f"pack {name}")


def resolve_policy(name_or_path: str) -> Policy:
    """A pack name or a path to a policy file."""
    return load_pack(name_or_path) if name_or_path in PACKS else load_policy(name_or_path)


__all__ = ["METRICS", "PACKS", "Consequence", "Line", "Metric", "Parameters", "Policy", "ResumeQuorum", "load_pack",
           "load_policy", "policy_from_document", "resolve_policy"]
