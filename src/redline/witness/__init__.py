"""A C2SP tlog-witness for redline logs (and any log with an Ed25519 checkpoint key).

``core`` holds the protocol logic and durable state (no HTTP); ``server`` the
FastAPI app (``server`` extra). Cosignatures, policies and the client side are in
``redline.log.witness``.
"""

from __future__ import annotations

from redline.witness.core import LogRecord, Witness, WitnessState

__all__ = ["LogRecord", "Witness", "WitnessState"]
