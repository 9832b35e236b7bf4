"""Emit a measured indicator as a signed ``Indicator`` statement: submit it to a log, or write the envelope.

Every indicator module (code share, time horizons, ...) ends the same way: a value
with its interval, window, method and rule versions and the digest of the evidence
it was computed from, signed by the measuring party. This module is that shared end.

    env = indicator_envelope(key, name="ai-code-share", subject="lab-a", value=0.42, unit="fraction",
                             interval=(0.30, 0.71), window=(start, end), method="...", method_version="1",
                             rule_version="ai-authorship-v1", evidence_digest=hexdigest, seq=3)
    done = submit_or_write(key, logdir=Path("log"), **fields)      # seq from the registry
    done = submit_or_write(key, out=Path("stmt.json"), seq=3, **fields)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from redline.crypto.dsse import Envelope
from redline.crypto.keys import SigningKey
from redline.errors import InvalidStatement
from redline.statements import Indicator, sign_predicate


def _digest(value: str | Mapping[str, str]) -> dict[str, str]:
    if isinstance(value, str):
        return {"sha256": value}
    return dict(value)


def indicator_envelope(key: SigningKey, *, name: str, subject: str, value: float, unit: str,
                       interval: tuple[float, float] | None, window: tuple[datetime, datetime], method: str,
                       method_version: str, rule_version: str | None, evidence_digest: str | Mapping[str, str],
                       seq: int, log: str | None = None) -> Envelope:
    """Build, validate and sign an ``Indicator`` statement spoken by ``key``'s party.

    ``interval`` is ``(low, high)`` with ``low <= value <= high`` (or ``None``); ``window`` is
    ``(start, end)``, timezone-aware; ``evidence_digest`` is a SHA-256 hex string or a digest
    dict such as ``{"sha256": ...}``. Invalid fields raise ``InvalidStatement`` naming the field.
    """
    low, high = interval if interval is not None else (None, None)
    pred = Indicator.build(party=key.name, seq=seq, name=name, subject=subject, value=value, unit=unit,
                           interval_low=low, interval_high=high, window_start=window[0], window_end=window[1],
                           method=method, method_version=method_version, rule_version=rule_version,
                           evidence_digest=_digest(evidence_digest))
    return sign_predicate(pred, key, log=log)


@dataclass(frozen=True)
class Emitted:
    """What :func:`submit_or_write` did: the envelope, and where it went."""

    envelope: Envelope
    seq: int
    index: int | None = None  # the log entry, when submitted
    out: Path | None = None  # the file the envelope JSON was written to, if any
    receipt: Path | None = None  # the file the offline receipt was written to, if any


def submit_or_write(key: SigningKey, *, logdir: Path | None = None, out: Path | None = None, seq: int | None = None,
                    receipt: Path | None = None, log: str | None = None, **fields: Any) -> Emitted:
    """Sign an indicator (``fields`` as for :func:`indicator_envelope`, less ``seq``) and deliver it.

    With ``logdir`` the statement is submitted through the registry of the log there
    (``seq`` defaults to the party's next sequence number; ``receipt`` writes the offline
    receipt). With ``out`` the envelope's canonical JSON is written to that file (both
    may be given). Writing without submitting needs an explicit ``seq`` and the ``log`` (origin) the statement
    is for; submitting binds it to the log it goes to.
    """
    if logdir is None and out is None:
        raise InvalidStatement("an indicator statement needs somewhere to go: a log directory or an output file")
    if receipt is not None and logdir is None:
        raise InvalidStatement("a receipt exists only for a statement submitted to a log")
    index = None
    if logdir is not None:
        from redline.cli.registry import open_registry  # the registry's opener lives with the CLI

        reg = open_registry(logdir)
        if seq is None:
            seq = reg.next_seq(key.name)
        env = indicator_envelope(key, seq=seq, log=reg.log.origin, **fields)
        done = reg.submit(env.to_json())
        index = done.index
        if receipt is not None:
            receipt.write_bytes(done.receipt.encode())
    else:
        if seq is None:
            raise InvalidStatement("writing an indicator statement without submitting it needs its sequence "
                                   "number (the party's next one)")
        env = indicator_envelope(key, seq=seq, log=log, **fields)
    if out is not None:
        out.write_bytes(env.to_json())
    return Emitted(env, seq, index, out, receipt)


__all__ = ["Emitted", "indicator_envelope", "submit_or_write"]
