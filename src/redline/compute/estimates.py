"""The two estimates of training compute that need no counting: 6·N·D and chip-hours × peak × utilization.

Pure arithmetic, no I/O beyond the chip catalog.

- ``six_nd(params, tokens)``: a dense transformer's forward pass costs about 2 FLOP per
  parameter per token and the backward twice that, so training costs about 6·N·D.
  N is whatever parameter count the caller gives. redline's convention is **all
  parameters, embeddings included** (what labs report and what Epoch's ``Parameters``
  column holds). Kaplan et al. (2020) exclude embeddings instead. An embedding
  lookup costs nothing, but an LM head tied to it is a full matmul, so including the
  embedding matrix once is right for tied models and overstates untied ones by
  ``V·d`` per parameter set. Either way 6·N·D leaves out the attention scores
  (``6·2·n_layer·seq·d`` per token, see ``redline.compute.flops.gpt_step_flop``) and
  treats a mixture-of-experts model as dense unless N is its *active* parameter count.
- ``hardware_flop(chip, count, hours, utilization)``: ``count × hours × 3600 × peak ×
  utilization``, where ``peak`` is the chip's dense BF16 FLOP/s from the catalog.
  Utilization defaults to ``DEFAULT_UTILIZATION`` = 0.4. That value is an
  **assumption**, the usual model-FLOP utilization of large dense training runs
  (reported values run from about 0.3 to 0.5). Give the measured value when you have it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from redline.compute.chips import Chip, get_chip
from redline.errors import MalformedInput

#: Assumed share of the dense BF16 peak a training run sustains (an assumption, not a measurement).
DEFAULT_UTILIZATION = 0.4
SECONDS_PER_HOUR = 3600


def _positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedInput(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise MalformedInput(f"{name} must be finite and {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return v


def six_nd(params: float, tokens: float) -> float:
    """Training FLOP of a dense transformer by the 6·N·D rule: ``6 × params × tokens``."""
    return 6.0 * _positive("params", params) * _positive("tokens", tokens)


@dataclass(frozen=True)
class HardwareEstimate:
    """Compute from chips, time and utilization, with the H100-equivalents it took."""

    chip: Chip
    count: int
    hours: float
    utilization: float
    flop: float

    @property
    def h100e(self) -> float:
        """H100-equivalents of the chips (dense BF16 peak / 989 TFLOP/s each)."""
        return self.count * self.chip.h100e

    @property
    def h100e_hours(self) -> float:
        """H100-equivalent hours."""
        return self.h100e * self.hours

    @property
    def peak_flop(self) -> float:
        """What the chips could have done at full peak (utilization 1)."""
        return self.count * self.hours * SECONDS_PER_HOUR * self.chip.peak_flop_per_s

    def to_json(self) -> dict[str, Any]:
        return {"chip": self.chip.chip, "count": self.count, "hours": self.hours, "utilization": self.utilization,
                "bf16_dense_tflops": self.chip.bf16_dense_tflops, "flop": self.flop, "h100e": self.h100e,
                "h100e_hours": self.h100e_hours}


def hardware_estimate(chip: str, count: int, hours: float,
                      utilization: float = DEFAULT_UTILIZATION) -> HardwareEstimate:
    """``count`` chips of catalog model ``chip`` for ``hours`` at ``utilization`` of dense BF16 peak."""
    spec = get_chip(chip)
    if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
        raise MalformedInput(f"chip count must be a positive integer, got {count!r}")
    h = _positive("hours", hours)
    u = _positive("utilization", utilization)
    if u > 1:
        raise MalformedInput(f"utilization is a share of peak and must be <= 1, got {utilization!r}")
    return HardwareEstimate(spec, count, h, u, count * h * SECONDS_PER_HOUR * spec.peak_flop_per_s * u)


def hardware_flop(chip: str, count: int, hours: float, utilization: float = DEFAULT_UTILIZATION) -> float:
    """Training FLOP from hardware: ``count × hours × 3600 × dense BF16 peak × utilization``."""
    return hardware_estimate(chip, count, hours, utilization).flop


__all__ = ["DEFAULT_UTILIZATION", "HardwareEstimate", "hardware_estimate", "hardware_flop", "six_nd"]
