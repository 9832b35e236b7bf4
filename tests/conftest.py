"""Shared test fixtures: the known-answer vectors, vendored in ``tests/vectors`` (see its README for their
origins and licences)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

VECTORS = Path(__file__).resolve().parent / "vectors"


@pytest.fixture(scope="session")
def vectors() -> Path:
    """Path of the vendored known-answer vectors (``tests/vectors``)."""
    if not VECTORS.is_dir():
        raise RuntimeError(f"known-answer vectors not found at {VECTORS}")
    return VECTORS


# Hypothesis: `make test` (and so CI) draws the same examples every run, so a submission's result does not
# depend on luck; set REDLINE_HYPOTHESIS=explore to draw fresh random examples (and more of them) when hunting bugs.
settings.register_profile("repeatable", derandomize=True, print_blob=True)
settings.register_profile("explore", max_examples=1000, print_blob=True)
settings.load_profile("explore" if os.environ.get("REDLINE_HYPOTHESIS") == "explore" else "repeatable")


@pytest.fixture(autouse=True, scope="session")
def _private_cache_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test (and every ``redline`` it starts) seals its local caches under a key of this test session's, and
    keeps the caches of remote logs in this session's directory: never the user's own."""
    where = tmp_path_factory.mktemp("cache")
    values = {"REDLINE_CACHE_KEY": str(where / "cache.key"), "REDLINE_CACHE_DIR": str(where / "logs")}
    old = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    yield
    for name, value in old.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
