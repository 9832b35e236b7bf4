"""Shared test fixtures: the known-answer vectors live in ../shared beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
VECTORS = SHARED / "vectors"


@pytest.fixture(scope="session")
def vectors() -> Path:
    """Path of ../shared/vectors; the suite needs it and says so when it is missing."""
    if not VECTORS.is_dir():
        raise RuntimeError(f"known-answer vectors not found at {VECTORS}: check out ../shared beside the repo")
    return VECTORS


# Hypothesis: `make test` (and so CI) draws the same examples every run, so a submission's result does not
# depend on luck; set REDLINE_HYPOTHESIS=explore to draw fresh random examples (and more of them) when hunting bugs.
settings.register_profile("repeatable", derandomize=True, print_blob=True)
settings.register_profile("explore", max_examples=1000, print_blob=True)
settings.load_profile("explore" if os.environ.get("REDLINE_HYPOTHESIS") == "explore" else "repeatable")
