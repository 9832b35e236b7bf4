"""A client for a log published as C2SP tlog-tiles over HTTP (c2sp.org/tlog-tiles): checkpoint, tiles, entries.

Nothing the server says is taken on trust. The checkpoint must be signed by the log key the caller holds (and,
given a witness policy, cosigned by enough of its witnesses); every tile is authenticated against the
checkpoint's root by :class:`~redline.log.tiles.TileHashReader`; every leaf of an entry bundle must hash to its
level-0 tile hash; consistency between two checkpoints is an RFC 9162 proof computed from the newer tree's tiles.
Every response is bounded in size and time. ``httpx`` (the ``server`` extra) is imported only when a client is
made, so ``import redline`` stays light.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Self

from redline.crypto.keys import VerifierKey
from redline.errors import FetchError, InconsistentLog, InvalidProof, MalformedInput, RedlineError
from redline.log.checkpoint import Checkpoint, open_checkpoint
from redline.log.leaf import decode_leaf
from redline.log.merkle import HASH_SIZE, leaf_hash, prove_consistency, stored_hash_index, verify_consistency
from redline.log.tiles import MAX_ENTRY_SIZE, TILE_WIDTH, TileHashReader, TilePath, entries_path, parse_entry_bundle

if TYPE_CHECKING:
    import httpx

#: Bound on a served checkpoint: a note with its (co)signatures is far smaller.
MAX_CHECKPOINT_BYTES = 1 << 16
#: Bound on an entry bundle: 256 entries of at most 65,535 bytes, each behind a 2-byte length.
MAX_BUNDLE_BYTES = TILE_WIDTH * (2 + MAX_ENTRY_SIZE)
#: Seconds allowed for one whole request (connect, headers and body).
DEFAULT_TIMEOUT_S = 30.0
#: Full hash tiles kept between trees (8 KiB each); they never change, and are re-authenticated on every use.
TILE_CACHE_SIZE = 4096


def is_url(target: str) -> bool:
    """Whether ``target`` names a remote log (``http://`` or ``https://``) rather than a directory."""
    return target.startswith(("http://", "https://"))


def load_witness_policy(path: Path) -> Any:
    """The witness policy (trust file) in ``path``: :class:`redline.log.witness.WitnessPolicy`, imported only here."""
    from redline.log.witness import WitnessPolicy

    return WitnessPolicy.load(path)


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint and the signed note it came in, verified against the log key (and a witness policy)."""

    checkpoint: Checkpoint
    note: bytes
    #: Witness name -> cosignature time (Unix seconds) of the cosignatures the policy counted.
    cosignatures: dict[str, int] = field(default_factory=dict)


def verify_checkpoint(note: bytes, log_key: VerifierKey, policy: Any = None) -> SignedCheckpoint:
    """``note`` opened as a checkpoint signed by ``log_key`` and, given a ``policy``, cosigned as it requires."""
    if policy is None:
        cp, _ = open_checkpoint(note, log_key)
        return SignedCheckpoint(cp, note)
    from redline.log.witness import check_cosigned

    cp, times = check_cosigned(note, log_key, policy)
    return SignedCheckpoint(cp, note, dict(times))


def _rethrow(where: str, exc: RedlineError) -> NoReturn:
    """Raise ``exc`` again as the same class (keeping an entry index), its message prefixed with ``where``."""
    if isinstance(exc, FetchError):
        raise exc
    try:
        out = type(exc)(f"{where}: {exc}")
    except TypeError:  # a class with required fields: keep it as it is
        raise exc from None
    if isinstance(exc, InconsistentLog) and isinstance(out, InconsistentLog):
        out.index = exc.index
    raise out from exc


class RemoteLog:
    """RemoteLog reads the tlog-tiles log at ``url`` and checks all of it against ``log_key`` (and ``policy``).

    ``client`` is an ``httpx.Client`` to use instead of a fresh one (its own timeouts then apply per phase;
    ``timeout_s`` still bounds each whole request).
    """

    def __init__(self, url: str, log_key: VerifierKey, *, policy: Any = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 client: httpx.Client | None = None) -> None:
        if not is_url(url):
            raise MalformedInput(f"{url!r} is not an http:// or https:// URL")
        import httpx

        self.url = url.rstrip("/")
        self.log_key = log_key
        self.policy = policy
        self.timeout_s = timeout_s
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=httpx.Timeout(timeout_s), follow_redirects=False,
                                              headers={"Accept-Encoding": "identity",
                                                       "User-Agent": "redline-tile-client"})
        self._tiles: dict[TilePath, bytes] = {}

    def close(self) -> None:
        """Close the HTTP client (when this log made it)."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- fetching ----------------------------------------------------------

    def fetch(self, path: str, limit: int) -> bytes:
        """The body of ``GET <url>/<path>``, at most ``limit`` bytes, or ``FetchError`` naming the URL."""
        import httpx

        url = f"{self.url}/{path}"
        deadline = time.monotonic() + self.timeout_s
        try:
            with self._client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise FetchError(f"GET {url}: HTTP {response.status_code} {response.reason_phrase}".rstrip(),
                                     url=url, status=response.status_code)
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise FetchError(f"GET {url}: response of {declared} bytes is over the {limit}-byte bound",
                                     url=url, status=200)
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise FetchError(f"GET {url}: response is over the {limit}-byte bound", url=url, status=200)
                    if time.monotonic() > deadline:
                        raise FetchError(f"GET {url}: timed out after {self.timeout_s:g} s", url=url)
                return bytes(body)
        except httpx.TimeoutException as exc:
            raise FetchError(f"GET {url}: timed out after {self.timeout_s:g} s", url=url) from exc
        except httpx.HTTPError as exc:
            raise FetchError(f"GET {url}: {type(exc).__name__}: {exc}", url=url) from exc

    def checkpoint(self) -> SignedCheckpoint:
        """The log's current checkpoint, verified against the log key (and the witness policy)."""
        url = f"{self.url}/checkpoint"
        note = self.fetch("checkpoint", MAX_CHECKPOINT_BYTES)
        try:
            return verify_checkpoint(note, self.log_key, self.policy)
        except RedlineError as exc:
            _rethrow(url, exc)

    def _fetch_tile(self, tile: TilePath) -> bytes:
        data = self._tiles.get(tile)
        if data is None:
            data = self.fetch(tile.path, tile.width * HASH_SIZE)
            if not tile.is_partial and len(data) == tile.width * HASH_SIZE:
                if len(self._tiles) >= TILE_CACHE_SIZE:
                    self._tiles.pop(next(iter(self._tiles)))
                self._tiles[tile] = data
        return data

    def hash_reader(self, cp: Checkpoint) -> TileHashReader:
        """A ``HashReader`` over the tree of ``cp``, every tile authenticated against its root before use."""
        return TileHashReader(cp.size, self._fetch_tile, root=cp.root)

    # --- proofs ----------------------------------------------------------------

    def consistency_proof(self, old: Checkpoint, new: Checkpoint) -> list[bytes]:
        """The RFC 9162 proof, computed from ``new``'s tiles, that ``old``'s tree is a prefix of ``new``'s.

        Raises ``InvalidProof`` when it is not (the two checkpoints disagree about the past), ``InconsistentLog``
        or ``MalformedInput`` when the tiles do not fit ``new`` (a broken or lying server, not a proof of anything).
        """
        if old.origin != new.origin:
            raise MalformedInput(f"checkpoints of two logs ({old.origin!r}, {new.origin!r}) are not comparable")
        if old.size > new.size:
            raise InvalidProof(f"old size {old.size} is larger than new size {new.size}")
        if old.size == 0 or old.size == new.size:
            proof: list[bytes] = []
        else:
            try:
                proof = prove_consistency(old.size, new.size, self.hash_reader(new))
            except RedlineError as exc:
                _rethrow(f"{self.url} (tree of size {new.size})", exc)
        if old.size:
            verify_consistency(old.size, new.size, old.root, new.root, proof)
        return proof

    # --- entries ----------------------------------------------------------------

    def leaves(self, cp: Checkpoint, start: int = 0,
               progress: Callable[[int, int], None] | None = None) -> Iterator[tuple[int, bytes]]:
        """Every ``(index, leaf)`` of ``cp``'s tree from ``start``, each checked against the authenticated tree."""
        if not 0 <= start <= cp.size:
            raise MalformedInput(f"start {start} is not in a tree of size {cp.size}")
        reader = self.hash_reader(cp)
        for n in range(start // TILE_WIDTH, -(-cp.size // TILE_WIDTH)):
            first = n * TILE_WIDTH
            width = min(TILE_WIDTH, cp.size - first)
            path = entries_path(n, width)
            where = f"{self.url}/{path}"
            data = self.fetch(path, width * (2 + MAX_ENTRY_SIZE))
            try:
                bundle = parse_entry_bundle(data, width)
                hashes = reader.read_hashes([stored_hash_index(0, first + k) for k in range(width)])
            except RedlineError as exc:
                _rethrow(where, exc)
            for k, leaf in enumerate(bundle):
                if leaf_hash(leaf) != hashes[k]:
                    raise InconsistentLog(f"{where}: entry {first + k} does not hash to its leaf in the tree of "
                                          f"size {cp.size}", first + k)
            for k in range(max(0, start - first), width):
                yield first + k, bundle[k]
            if progress is not None:
                progress(first + width, cp.size)

    def entries(self, cp: Checkpoint, start: int = 0,
                progress: Callable[[int, int], None] | None = None) -> Iterator[tuple[int, int, bytes]]:
        """Every ``(index, integration time in ms, entry)`` of ``cp``'s tree from ``start``, each checked."""
        for index, leaf in self.leaves(cp, start, progress):
            try:
                time_ms, entry = decode_leaf(leaf)
            except RedlineError as exc:
                _rethrow(f"{self.url}: entry {index}", exc)
            yield index, time_ms, entry


__all__ = ["FetchError", "RemoteLog", "SignedCheckpoint", "is_url", "load_witness_policy", "verify_checkpoint"]
