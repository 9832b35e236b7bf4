"""``redline state URL``: the state replayed from a log's tiles alone, trusting only the log key the reader holds.

The public needs no ``log.db``: the checkpoint is checked against ``--log-key`` (never a key the server offers)
and, given ``--witness-policy``, its witnesses; every entry is checked against the tree before it is replayed.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from redline.crypto.keys import VerifierKey, load_verifier_key
from redline.engine import Entry, State
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


def replay_remote(remote: RemoteLog, signed: SignedCheckpoint, *, use_cache: bool = True,
                  note: Callable[[str], None] | None = None, base: State | None = None,
                  check_snapshot: bool = False, reopen: Callable[[], RemoteLog] | None = None) -> State:
    """The engine's state of ``signed``'s tree: from the latest usable snapshot of this log in this user's cache
    (``redline.statecache``: its root proven a prefix of ``signed``'s by a consistency proof from the tiles), or
    from ``base`` (a state of this log the caller holds), plus every entry after it, each checked against its
    tiles; ``use_cache=False`` replays every entry; ``check_snapshot`` digests a snapshot's state again;
    ``reopen`` opens the log again, for a caller that closes ``remote`` before it is done with the state
    (``redline.statecache`` may need to read the log again for a snapshot's timeline).

    With a witness policy, the log's clock is bounded too: the last entry may not be integrated after the
    witnesses cosigned the checkpoint (``redline.log.witness.check_times``).
    """
    from redline.log.checkpoint import Checkpoint
    from redline.statecache import Source, load_source

    cp = signed.checkpoint

    def consistent(size: int, root: bytes) -> None:
        remote.consistency_proof(Checkpoint(cp.origin, size, root), cp)

    def source_of(remote: RemoteLog) -> Source:
        def entries(start: int) -> Iterator[Entry]:
            for i, t, e in remote.entries(cp, start):
                yield Entry(i, t, e)

        return Source(cp.origin, remote.log_key.to_string(), cp.size, cp.root, consistent, entries)

    @contextlib.contextmanager
    def reopened() -> Iterator[Source]:
        assert reopen is not None
        with reopen() as again:
            yield source_of(again)

    st = load_source(source_of(remote), remote_cache_dir(cp.origin, remote.log_key), use_cache=use_cache, note=note,
                     base=base, check_snapshot=check_snapshot, reopen=reopened if reopen is not None else None).state
    if remote.policy is not None:
        from redline.log.witness import check_times

        check_times(cp, signed.cosignatures, st.last_time_ms if st.next_index else None,
                    threshold=remote.policy.threshold)
    return st


def remote_cache_dir(origin: str, key: VerifierKey) -> Path:
    """Where this user keeps the state snapshots of the log ``origin`` signed by ``key`` read over HTTP."""
    from redline.log.localcache import cache_dir

    name = hashlib.sha256(f"{origin}\n{key.to_string()}".encode()).hexdigest()[:32]
    return cache_dir() / "remote" / name


def remote_state(url: str, log_key: str, witness_policy: Path | None = None, *, use_cache: bool = True,
                 note: Callable[[str], None] | None = None, check_snapshot: bool = False) -> State:
    """The state of the log at ``url`` as of its current checkpoint, derived from tiles alone (and, unless
    ``use_cache`` is False, this user's snapshot of an earlier size of it)."""
    with open_remote(url, log_key, witness_policy) as remote:
        return replay_remote(remote, remote.checkpoint(), use_cache=use_cache, note=note,
                             check_snapshot=check_snapshot, reopen=lambda: open_remote(url, log_key, witness_policy))


__all__ = ["open_remote", "remote_cache_dir", "remote_state", "replay_remote"]
