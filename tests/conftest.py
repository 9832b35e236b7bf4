"""Shared test fixtures: the known-answer vectors live in ../shared beside the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
VECTORS = SHARED / "vectors"


@pytest.fixture(scope="session")
def vectors() -> Path:
    """Path of ../shared/vectors; the suite needs it and says so when it is missing."""
    if not VECTORS.is_dir():
        raise RuntimeError(f"known-answer vectors not found at {VECTORS}: check out ../shared beside the repo")
    return VECTORS
