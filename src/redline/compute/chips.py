"""The chip catalog: dense BF16 peak FLOP/s per accelerator, and H100-equivalents.

The catalog is data (``chips.csv`` beside this module), one row per chip with the
vendor data sheet it comes from. One H100e is the dense BF16 peak of an H100 SXM,
989 TFLOP/s; a chip's H100e is its dense BF16 peak divided by that. Chips without
BF16 (V100) use their FP16 tensor figure, and the row says so.

Pure: the CSV is read lazily, once, through ``importlib.resources``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType

from redline.errors import MalformedInput

#: Dense BF16 peak of one H100 SXM in TFLOP/s: the definition of one H100e.
H100E_TFLOPS = 989.0

CATALOG_COLUMNS = ("chip", "vendor", "bf16_dense_tflops", "source")
MAX_CATALOG_ROWS = 1000
MAX_CHIP_NAME = 64
#: Sanity bound on one chip's dense peak (TFLOP/s); a typo like 9890000 is refused.
MAX_TFLOPS = 1e6


@dataclass(frozen=True)
class Chip:
    """One accelerator model: its name, vendor, dense BF16 peak and where that figure comes from."""

    chip: str
    vendor: str
    bf16_dense_tflops: float
    source: str

    @property
    def h100e(self) -> float:
        """H100-equivalents of one such chip."""
        return self.bf16_dense_tflops / H100E_TFLOPS

    @property
    def peak_flop_per_s(self) -> float:
        """Dense BF16 peak in FLOP/s."""
        return self.bf16_dense_tflops * 1e12


def parse_catalog(text: str, *, what: str = "chips.csv") -> dict[str, Chip]:
    """Parse and validate catalog CSV text; raise ``MalformedInput`` naming the bad row."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise MalformedInput(f"{what}: not valid CSV: {exc}") from exc
    if not rows or tuple(rows[0]) != CATALOG_COLUMNS:
        got = ",".join(rows[0]) if rows else "(empty file)"
        raise MalformedInput(f"{what}: header must be {','.join(CATALOG_COLUMNS)}, got {got}")
    if len(rows) - 1 > MAX_CATALOG_ROWS:
        raise MalformedInput(f"{what}: {len(rows) - 1} rows, over the limit of {MAX_CATALOG_ROWS}")
    catalog: dict[str, Chip] = {}
    for lineno, row in enumerate(rows[1:], start=2):
        where = f"{what} line {lineno}"
        if not row:
            raise MalformedInput(f"{where}: empty row")
        if len(row) != len(CATALOG_COLUMNS):
            raise MalformedInput(f"{where}: expected {len(CATALOG_COLUMNS)} columns, got {len(row)}")
        name, vendor, tflops_text, source = row
        where = f"{where} (chip {name!r})"
        if not name or name != name.strip() or len(name) > MAX_CHIP_NAME or not name.isprintable():
            raise MalformedInput(f"{where}: chip name must be 1..{MAX_CHIP_NAME} printable characters "
                                 "without surrounding spaces")
        if name in catalog:
            raise MalformedInput(f"{where}: duplicate chip")
        if not vendor.strip():
            raise MalformedInput(f"{where}: vendor is empty")
        if not source.strip():
            raise MalformedInput(f"{where}: source is empty; every figure needs its data sheet")
        try:
            tflops = float(tflops_text)
        except ValueError as exc:
            raise MalformedInput(f"{where}: bf16_dense_tflops {tflops_text!r} is not a number") from exc
        if not math.isfinite(tflops) or not 0 < tflops <= MAX_TFLOPS:
            raise MalformedInput(f"{where}: bf16_dense_tflops {tflops_text!r} must be finite, > 0 "
                                 f"and <= {MAX_TFLOPS:g}")
        catalog[name] = Chip(name, vendor, tflops, source)
    return catalog


@cache
def _catalog() -> Mapping[str, Chip]:
    text = resources.files("redline.compute").joinpath("chips.csv").read_text(encoding="utf-8")
    return MappingProxyType(parse_catalog(text))


def load_catalog() -> dict[str, Chip]:
    """The packaged chip catalog, by chip name (read once; each call returns a fresh dict)."""
    return dict(_catalog())


def get_chip(chip_model: str) -> Chip:
    """The catalog row of ``chip_model``; ``MalformedInput`` naming it when unknown."""
    catalog = _catalog()
    chip = catalog.get(chip_model) if isinstance(chip_model, str) else None
    if chip is None:
        raise MalformedInput(f"unknown chip {chip_model!r}; the catalog knows: {', '.join(sorted(catalog))}")
    return chip


def h100e(chip_model: str, count: int) -> float:
    """H100-equivalents of ``count`` chips of ``chip_model`` (count × dense BF16 TFLOP/s / 989)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise MalformedInput(f"chip count for {chip_model!r} must be a non-negative integer, got {count!r}")
    return count * get_chip(chip_model).bf16_dense_tflops / H100E_TFLOPS
