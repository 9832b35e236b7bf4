"""``redline state URL``: the state replayed from a log's tiles alone, trusting only the log key the reader holds.

The public needs no ``log.db``: the checkpoint is checked against ``--log-key`` (never a key the server offers)
and, given ``--witness-policy``, its witnesses; every entry is checked against the tree before it is replayed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from redline.crypto.keys import VerifierKey, load_verifier_key
from redline.engine import Entry, State, replay
from redline.log.remote import RemoteLog, SignedCheckpoint, load_witness_policy


def open_remote(url: str, log_key: str, witness_policy: Path | None = None) -> RemoteLog:
    """The log at ``url`` checked against ``log_key`` (a verifier key string or .pub file) and a policy file."""
    key: VerifierKey = load_verifier_key(log_key)
    if witness_policy is not None:
        from redline.cli.inputs import check_regular
        from redline.log.witness import MAX_POLICY_BYTES

        check_regular(witness_policy, MAX_POLICY_BYTES, f"witness policy {witness_policy}")
    policy: Any = load_witness_policy(witness_policy) if witness_policy is not None else None
    return RemoteLog(url, key, policy=policy)


def replay_remote(remote: RemoteLog, signed: SignedCheckpoint) -> State:
    """The engine's state replayed from every entry of ``signed``'s tree, each checked against its tiles.

    With a witness policy, the log's clock is bounded too: the last entry may not be integrated after the
    witnesses cosigned the checkpoint (``redline.log.witness.check_times``).
    """
    cp = signed.checkpoint
    latest: list[int] = []

    def entries() -> Iterator[Entry]:
        for i, t, e in remote.entries(cp):
            latest[:] = [t]
            yield Entry(i, t, e)

    st = replay(entries(), State(origin=cp.origin))
    if remote.policy is not None:
        from redline.log.witness import check_times

        check_times(cp, signed.cosignatures, latest[0] if latest else None, threshold=remote.policy.threshold)
    return st


def remote_state(url: str, log_key: str, witness_policy: Path | None = None) -> State:
    """The state of the log at ``url`` as of its current checkpoint, derived from tiles alone."""
    with open_remote(url, log_key, witness_policy) as remote:
        return replay_remote(remote, remote.checkpoint())


__all__ = ["open_remote", "remote_state", "replay_remote"]
