"""Witness cosignatures (c2sp.org/tlog-cosignature v1), k-of-n witness policies and a tlog-witness client.

A witness cosigns a log checkpoint by signing
``cosignature/v1\\ntime <unix seconds>\\n<checkpoint text>`` with Ed25519; the
signature line is ``— <witness name> base64(key ID[4] || uint64 BE time || sig[64])``
where the key ID is ``SHA-256(name || 0x0A || 0x04 || public key)[:4]``. Witness
verifier keys are C2SP vkeys with algorithm byte 0x04 (``VerifierKey(alg=0x04)``).

Clients trust a checkpoint when the log signed it and at least k of the n witnesses
of their ``WitnessPolicy`` cosigned it (``check_cosigned``). The cosignature times
also bound the log's clock: a checkpoint whose entries were integrated later than
the witnesses saw it is refused (``check_times``).

The log gets cosignatures with ``collect_cosignatures`` (c2sp.org/tlog-witness:
``POST <prefix>/add-checkpoint``); ``make_publisher`` wraps it as the log server's
publish step. This module imports no HTTP server; ``httpx`` (the ``server`` extra)
is imported only when a request is made.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from redline.crypto.encoding import b64decode, b64encode
from redline.crypto.keys import (
    ALG_COSIGNATURE_V1,
    SigningKey,
    VerifierKey,
    key_id,
    save_signing_key,
)
from redline.crypto.note import NoteSignature, add_signatures, parse_note, validate_note_text
from redline.errors import (
    BadSignature,
    InputTooLarge,
    LogClockAhead,
    MalformedInput,
    MalformedKey,
    PolicyNotMet,
    WitnessError,
    WitnessRefused,
)
from redline.log.checkpoint import Checkpoint, open_checkpoint
from redline.times import SECOND_MS

#: First line of every cosigned message (domain separation).
COSIGNATURE_HEADER = "cosignature/v1\n"
#: Largest cosignature timestamp allowed by tlog-cosignature.
MAX_TIMESTAMP = (1 << 63) - 1
#: Bytes after the key ID in an Ed25519 cosignature line: timestamp and signature.
COSIGNATURE_BYTES = 8 + 64
#: Most consistency-proof lines in an add-checkpoint request (tlog-witness).
MAX_PROOF_LINES = 63
#: Largest add-checkpoint request body a witness reads, and largest answer a client reads.
MAX_REQUEST_BYTES = 64 * 1024
MAX_RESPONSE_BYTES = 64 * 1024
#: Cosignature times further than this ahead of the verifier's clock are not counted.
DEFAULT_MAX_AHEAD_S = 60
#: Integration times may run this far ahead of a cosignature time (clocks of different machines).
DEFAULT_SKEW_MS = 10_000
#: Largest trust file read, and most witnesses in one policy.
MAX_POLICY_BYTES = 1 << 20
MAX_WITNESSES = 256
#: Content type of a 409 answer's body (tlog-witness).
SIZE_CONTENT_TYPE = "text/x.tlog.size"


# --- cosignature/v1 -------------------------------------------------------------


def cosignature_message(checkpoint_text: str, time_s: int) -> bytes:
    """The message a witness signs: header line, time line, then the checkpoint text (all of it)."""
    _check_time(time_s)
    validate_note_text(checkpoint_text)
    return f"{COSIGNATURE_HEADER}time {time_s}\n{checkpoint_text}".encode()


def _check_time(time_s: int) -> None:
    if isinstance(time_s, bool) or not isinstance(time_s, int) or not 0 <= time_s <= MAX_TIMESTAMP:
        raise MalformedInput(f"cosignature time {time_s!r} is not an integer in [0, 2^63-1]")


def witness_verifier(key: SigningKey) -> VerifierKey:
    """The cosignature/v1 verifier key (algorithm 0x04) of a witness signing key."""
    return key.verifier(ALG_COSIGNATURE_V1)


def cosign(checkpoint_text: str, key: SigningKey, time_s: int) -> NoteSignature:
    """The witness's cosignature/v1 signature of ``checkpoint_text`` at ``time_s`` (``.line()`` is the note line)."""
    sig = key.sign(cosignature_message(checkpoint_text, time_s))
    return NoteSignature(key.name, key_id(key.name, ALG_COSIGNATURE_V1, key.public), time_s.to_bytes(8, "big") + sig)


def parse_signature_lines(checkpoint_text: str, lines: bytes | str) -> tuple[NoteSignature, ...]:
    """Parse note signature lines (each ``— name base64\\n``), e.g. a witness's 200 answer."""
    try:
        if isinstance(lines, str):
            lines = lines.encode("utf-8")
        text = checkpoint_text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedInput(f"signature lines or checkpoint text hold a lone surrogate at offset {exc.start}") \
            from None
    note = parse_note(text + b"\n" + lines)
    if note.text != checkpoint_text:  # the note's text may hold blank lines: anything before the last is not ours
        raise MalformedInput("signature lines are preceded by a blank line or other text")
    return note.signatures


def verify_cosignature(checkpoint_text: str, signature: NoteSignature | str, key: VerifierKey) -> int:
    """Check a cosignature/v1 of ``checkpoint_text`` by witness ``key``; return its timestamp (unix seconds).

    ``signature`` is a parsed signature or one signature line. Raises
    ``BadSignature`` if the line is not this key's or does not verify.
    """
    if key.alg != ALG_COSIGNATURE_V1:
        raise MalformedKey(f"key {key.name!r} is not a cosignature/v1 witness key (algorithm {key.alg:#04x})")
    if isinstance(signature, str):
        sigs = parse_signature_lines(checkpoint_text, signature if signature.endswith("\n") else signature + "\n")
        if len(sigs) != 1:
            raise MalformedInput(f"expected one cosignature line, got {len(sigs)}")
        signature = sigs[0]
    if signature.name != key.name or signature.key_id != key.key_id:
        raise BadSignature(f"cosignature by {signature.name!r} (key ID {signature.key_id.hex()}) is not from "
                           f"witness key {key.name!r} ({key.key_id.hex()})")
    if len(signature.signature) != COSIGNATURE_BYTES:
        raise BadSignature(f"cosignature by {key.name!r} has {len(signature.signature)} bytes after the key ID, "
                           f"not {COSIGNATURE_BYTES}")
    time_s = int.from_bytes(signature.signature[:8], "big")
    if time_s > MAX_TIMESTAMP:
        raise BadSignature(f"cosignature by {key.name!r} has timestamp {time_s} over 2^63-1")
    key.verify(cosignature_message(checkpoint_text, time_s), signature.signature[8:])
    return time_s


def new_witness_key(name: str, path: Path, *, overwrite: bool = False) -> tuple[SigningKey, VerifierKey]:
    """Generate a witness key: the private key to ``path`` (mode 0600), its 0x04 vkey to ``path.pub``.

    The private file has the usual Go sumdb form (as ``redline key new``); only the
    public half differs, being the cosignature/v1 verifier key.
    """
    key = SigningKey.generate(name)
    pub = save_signing_key(key, Path(path), overwrite=overwrite)
    vkey = witness_verifier(key)
    tmp = pub.with_name(f".{pub.name}.{os.getpid()}.tmp")
    tmp.write_text(vkey.to_string() + "\n")
    os.replace(tmp, pub)
    return key, vkey


# --- k-of-n policy ----------------------------------------------------------------


class WitnessEndpoint(NamedTuple):
    """A witness the log asks for cosignatures: its submission prefix URL and its cosignature key."""

    url: str
    key: VerifierKey


@dataclass(frozen=True)
class WitnessPolicy:
    """Trust a checkpoint once ``threshold`` of ``witnesses`` (cosignature/v1 keys) cosigned it.

    ``urls`` optionally maps a witness name to its submission prefix (for logs
    that ask the witnesses themselves; verifiers do not need it).

    Trust file (``load``/``from_text``), text form, one directive per line, ``#`` comments::

        witness <vkey> [<submission prefix URL>]
        quorum <k>           # optional; all witnesses when absent

    or JSON: ``{"witnesses": [{"vkey": "...", "url": "..."}], "quorum": k}``.
    """

    witnesses: tuple[VerifierKey, ...]
    threshold: int
    urls: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "witnesses", tuple(self.witnesses))
        if not self.witnesses:
            raise MalformedInput("a witness policy needs at least one witness")
        if len(self.witnesses) > MAX_WITNESSES:
            raise InputTooLarge(f"witness policy has {len(self.witnesses)} witnesses, over {MAX_WITNESSES}",
                                size=len(self.witnesses), limit=MAX_WITNESSES)
        names: set[str] = set()
        for k in self.witnesses:
            if k.alg != ALG_COSIGNATURE_V1:
                raise MalformedKey(f"witness key {k.name!r} has algorithm {k.alg:#04x}, not 0x04 (cosignature/v1)")
            if k.name in names:
                raise MalformedInput(f"witness {k.name!r} appears twice in the policy")
            names.add(k.name)
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int) \
                or not 1 <= self.threshold <= len(self.witnesses):
            raise MalformedInput(f"witness quorum {self.threshold!r} is not between 1 and {len(self.witnesses)}")
        unknown = set(self.urls) - names
        if unknown:
            raise MalformedInput(f"witness URLs name unknown witnesses: {', '.join(sorted(unknown))}")

    def key(self, name: str) -> VerifierKey | None:
        """The witness key named ``name``, if in the policy."""
        return next((k for k in self.witnesses if k.name == name), None)

    def endpoints(self) -> list[WitnessEndpoint]:
        """The witnesses with a submission URL, in policy order."""
        return [WitnessEndpoint(self.urls[k.name], k) for k in self.witnesses if k.name in self.urls]

    def to_text(self) -> str:
        """The policy in the text trust-file form."""
        lines = [f"witness {k.to_string()}" + (f" {self.urls[k.name]}" if k.name in self.urls else "")
                 for k in self.witnesses]
        return "\n".join([*lines, f"quorum {self.threshold}"]) + "\n"

    @classmethod
    def from_text(cls, text: str) -> WitnessPolicy:
        """Parse a trust file (text or JSON form)."""
        if len(text) > MAX_POLICY_BYTES:
            raise InputTooLarge(f"witness policy is over {MAX_POLICY_BYTES} bytes", limit=MAX_POLICY_BYTES)
        if text.lstrip().startswith("{"):
            return cls._from_json(text)
        keys: list[VerifierKey] = []
        urls: dict[str, str] = {}
        quorum: int | None = None
        for n, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            word, *args = line.split()
            if word == "witness" and len(args) in (1, 2):
                k = _policy_key(args[0], f"line {n}")
                keys.append(k)
                if len(args) == 2:
                    urls[k.name] = _policy_url(args[1], f"line {n}")
            elif word == "quorum" and len(args) == 1:
                if quorum is not None:
                    raise MalformedInput(f"witness policy line {n}: a second quorum")
                quorum = _policy_int(args[0], f"line {n}")
            else:
                raise MalformedInput(f"witness policy line {n}: expected 'witness <vkey> [<url>]' or 'quorum <k>'")
        return cls(tuple(keys), len(keys) if quorum is None else quorum, urls)

    @classmethod
    def _from_json(cls, text: str) -> WitnessPolicy:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise MalformedInput(f"witness policy is not valid JSON: {exc}") from exc
        except RecursionError:
            raise MalformedInput("witness policy JSON is nested too deeply") from None
        if (not isinstance(doc, dict) or set(doc) - {"witnesses", "quorum"}
                or not isinstance(doc.get("witnesses"), list)):
            raise MalformedInput('witness policy JSON must be {"witnesses": [...], "quorum": k}')
        keys: list[VerifierKey] = []
        urls: dict[str, str] = {}
        for i, w in enumerate(doc["witnesses"]):
            where = f"witnesses[{i}]"
            if isinstance(w, str):
                w = {"vkey": w}
            if not isinstance(w, dict) or set(w) - {"vkey", "url"} or not isinstance(w.get("vkey"), str):
                raise MalformedInput(f"witness policy {where} must be a vkey string or {{\"vkey\": ..., \"url\": ...}}")
            k = _policy_key(w["vkey"], where)
            keys.append(k)
            if "url" in w:
                if not isinstance(w["url"], str):
                    raise MalformedInput(f"witness policy {where}.url is not a string")
                urls[k.name] = _policy_url(w["url"], where)
        quorum = doc.get("quorum", len(keys))
        if isinstance(quorum, bool) or not isinstance(quorum, int):
            raise MalformedInput("witness policy quorum is not an integer")
        return cls(tuple(keys), quorum, urls)

    @classmethod
    def load(cls, path: str | Path) -> WitnessPolicy:
        """Read a trust file."""
        path = Path(path)
        size = path.stat().st_size
        if size > MAX_POLICY_BYTES:
            raise InputTooLarge(f"{path} is over {MAX_POLICY_BYTES} bytes", size=size, limit=MAX_POLICY_BYTES,
                                path=str(path))
        try:
            return cls.from_text(path.read_text("utf-8"))
        except UnicodeDecodeError as exc:
            raise MalformedInput(f"{path}: not UTF-8 text") from exc
        except MalformedInput as exc:
            raise type(exc)(f"{path}: {exc}") from exc


def _policy_key(text: str, where: str) -> VerifierKey:
    try:
        return VerifierKey.from_string(text)
    except MalformedKey as exc:
        raise MalformedKey(f"witness policy {where}: {exc}") from exc


def _policy_url(text: str, where: str) -> str:
    url = text.rstrip("/")
    if not url.startswith(("http://", "https://")) or any(c.isspace() for c in text):
        raise MalformedInput(f"witness policy {where}: URL {text!r} is not an http(s) URL")
    if "#" in text:  # '#' starts a comment in the text form, and a fragment has no place in a submission prefix
        raise MalformedInput(f"witness policy {where}: URL {text!r} has a '#' fragment")
    return url


def _policy_int(text: str, where: str) -> int:
    if not text.isdigit() or not text.isascii() or len(text) > 6:
        raise MalformedInput(f"witness policy {where}: quorum {text!r} is not a small decimal")
    return int(text)


def check_cosigned(note_bytes: bytes, log_key: VerifierKey, policy: WitnessPolicy, *,
                   max_ahead_s: int = DEFAULT_MAX_AHEAD_S, now_s: int | None = None
                   ) -> tuple[Checkpoint, dict[str, int]]:
    """Verify the log's signature and at least ``policy.threshold`` cosignatures of a checkpoint note.

    Returns the checkpoint and ``{witness name: cosignature time}`` for every valid
    policy cosignature. Signatures from keys outside the policy are ignored; a bad
    signature from a policy witness raises ``BadSignature``, two from one witness
    ``MalformedInput`` (stricter than the note layer, which like Go's ``note.Open``
    skips a known key's repeats); cosignatures timed more than ``max_ahead_s`` after
    ``now_s`` (the system clock by default) are not counted. Too few cosignatures
    raise ``PolicyNotMet``.
    """
    cp, note = open_checkpoint(note_bytes, log_key, others=policy.witnesses)
    now = int(time.time()) if now_s is None else now_s
    by_id = {(k.name, k.key_id): k for k in policy.witnesses}
    times: dict[str, int] = {}
    future: list[str] = []
    seen: set[tuple[str, bytes]] = set()
    for sig in note.signatures:
        k = by_id.get((sig.name, sig.key_id))
        if k is None:
            continue
        if (sig.name, sig.key_id) in seen:
            raise MalformedInput(f"note carries two cosignatures from witness {sig.name!r}")
        seen.add((sig.name, sig.key_id))
        t = verify_cosignature(note.text, sig, k)
        if t > now + max_ahead_s:
            future.append(f"{k.name} (time {t}, {t - now}s ahead)")
            continue
        times[k.name] = t
    if len(times) < policy.threshold:
        extra = f"; not counted, timed in the future: {', '.join(future)}" if future else ""
        raise PolicyNotMet(f"checkpoint of {cp.origin} at size {cp.size} has {len(times)} valid cosignature(s) "
                           f"from the policy's witnesses, needs {policy.threshold} of {len(policy.witnesses)}"
                           f"{extra}")
    return cp, times


def check_times(checkpoint: Checkpoint, cosignature_times: dict[str, int] | Iterable[int],
                latest_integration_ms: int | None, *, skew_ms: int = DEFAULT_SKEW_MS,
                threshold: int | None = None) -> None:
    """Refuse a checkpoint whose entries' integration times run ahead of its cosignature times.

    A witness cosigns a checkpoint after the log integrated every entry in it, so the
    latest integration time (ms) must not exceed a cosignature time (whole seconds,
    so up to 999 ms later) by more than ``skew_ms``. At least ``threshold``
    cosignatures (all of them by default; pass the policy's k) must bound the log's
    clock this way, else ``LogClockAhead``. An empty tree (or
    ``latest_integration_ms`` None) has nothing to bound.
    """
    times = list(cosignature_times.values()) if isinstance(cosignature_times, dict) else list(cosignature_times)
    need = len(times) if threshold is None else threshold
    if latest_integration_ms is None or checkpoint.size == 0:
        return
    if not times or need < 1:
        raise PolicyNotMet(f"checkpoint of {checkpoint.origin} at size {checkpoint.size}: no cosignature time "
                           f"bounds the log's clock")
    bounding = [t for t in times if latest_integration_ms < (t + 1) * SECOND_MS + skew_ms]
    if len(bounding) < need:
        raise LogClockAhead(f"checkpoint of {checkpoint.origin} at size {checkpoint.size}: entries integrated at "
                            f"{latest_integration_ms} ms run ahead of the witnesses' cosignature times "
                            f"{sorted(times)} s (allowed skew {skew_ms} ms; {len(bounding)} of {need} needed bound it)")


# --- tlog-witness requests --------------------------------------------------------


def add_checkpoint_request(old_size: int, proof: Sequence[bytes], signed_checkpoint: bytes) -> bytes:
    """The tlog-witness add-checkpoint body: ``old <n>``, proof lines, a blank line, the signed checkpoint."""
    if isinstance(old_size, bool) or not isinstance(old_size, int) or old_size < 0:
        raise MalformedInput(f"old size {old_size!r} is not a non-negative integer")
    if len(proof) > MAX_PROOF_LINES:
        raise MalformedInput(f"consistency proof has {len(proof)} hashes, over {MAX_PROOF_LINES}")
    if old_size == 0 and proof:
        raise MalformedInput("a request from old size 0 carries no proof")
    for i, h in enumerate(proof):
        if len(h) != 32:
            raise MalformedInput(f"consistency proof hash {i} is {len(h)} bytes, not 32")
    if not signed_checkpoint.endswith(b"\n"):
        raise MalformedInput("signed checkpoint does not end in a newline")
    return b"".join([f"old {old_size}\n".encode(), *(b64encode(h).encode() + b"\n" for h in proof), b"\n",
                     signed_checkpoint])


def parse_add_checkpoint_request(body: bytes) -> tuple[int, list[bytes], bytes]:
    """Split an add-checkpoint body into (old size, proof hashes, signed checkpoint bytes), strictly."""
    if len(body) > MAX_REQUEST_BYTES:
        raise InputTooLarge(f"add-checkpoint body is {len(body)} bytes, over {MAX_REQUEST_BYTES}", size=len(body),
                            limit=MAX_REQUEST_BYTES)
    pos = 0
    proof: list[bytes] = []
    old: int | None = None
    while True:
        end = body.find(b"\n", pos)
        if end < 0:
            raise MalformedInput("add-checkpoint body ends before the blank line")
        line = body[pos:end]
        pos = end + 1
        if old is None:
            if not line.startswith(b"old "):
                raise MalformedInput("add-checkpoint body does not start with 'old <size>'")
            digits = line[4:]
            if not digits.isdigit() or (digits != b"0" and digits.startswith(b"0")) or len(digits) > 19:
                raise MalformedInput("old size is not a decimal without leading zeros")
            old = int(digits)
            continue
        if not line:
            break
        if len(proof) == MAX_PROOF_LINES:
            raise MalformedInput(f"add-checkpoint body has more than {MAX_PROOF_LINES} proof lines")
        h = b64decode(line, what=f"consistency proof line {len(proof) + 1}")
        if len(h) != 32:
            raise MalformedInput(f"consistency proof line {len(proof) + 1} is {len(h)} bytes, not 32")
        proof.append(h)
    if old == 0 and proof:
        raise MalformedInput("a request from old size 0 must carry no proof")
    return old, proof, body[pos:]


# --- the client: asking witnesses -------------------------------------------------


class ConsistencyProver(Protocol):
    """What ``make_publisher`` needs of a log (``redline.log.service.Log`` is one)."""

    def prove_consistency(self, old_size: int, new_size: int | None = None) -> list[bytes]: ...


@dataclass
class _Outcome:
    endpoint: WitnessEndpoint
    cosignature: NoteSignature | None = None
    conflict_size: int | None = None
    problem: str = ""


def _post(client: Any, ep: WitnessEndpoint, body: bytes, text: str) -> _Outcome:
    """One add-checkpoint request; never raises."""
    out = _Outcome(ep)
    url = ep.url.rstrip("/") + "/add-checkpoint"
    try:
        with client.stream("POST", url, content=body, headers={"Content-Type": "text/plain"}) as r:
            data = b""
            for chunk in r.iter_bytes():
                data += chunk
                if len(data) > MAX_RESPONSE_BYTES:
                    out.problem = f"answer over {MAX_RESPONSE_BYTES} bytes"
                    return out
            status, ctype = r.status_code, r.headers.get("content-type", "")
    except Exception as exc:  # noqa: BLE001 - any transport failure is this witness's failure
        out.problem = f"request failed: {type(exc).__name__}: {exc}"
        return out
    if status == 409 and ctype.split(";")[0].strip() == SIZE_CONTENT_TYPE:
        s = data.rstrip(b"\n")
        if data.endswith(b"\n") and s.isdigit() and len(s) <= 19 and (s == b"0" or not s.startswith(b"0")):
            out.conflict_size = int(s)
            out.problem = f"409: witness is at size {out.conflict_size}"
        else:
            out.problem = "409 with a malformed size body"
        return out
    if status != 200:
        msg = data[:200].decode("utf-8", "replace").strip()
        out.problem = f"HTTP {status}" + (f": {msg}" if msg else "")
        return out
    try:
        sigs = parse_signature_lines(text, data)
    except MalformedInput as exc:
        out.problem = f"malformed cosignature lines: {exc}"
        return out
    for sig in sigs:
        if (sig.name, sig.key_id) != (ep.key.name, ep.key.key_id):
            continue  # other keys' lines are ignored
        try:
            verify_cosignature(text, sig, ep.key)
        except (BadSignature, MalformedInput) as exc:
            out.problem = f"bad cosignature: {exc}"
            return out
        out.cosignature = sig
        return out
    out.problem = "answer holds no cosignature from the witness's key"
    return out


def collect_cosignatures(witnesses: Iterable[WitnessEndpoint | tuple[str, VerifierKey]],
                         old_size_by_witness: MutableMapping[str, int], new_checkpoint: bytes,
                         proof_fn: Callable[[int], list[bytes]], policy: WitnessPolicy, *,
                         timeout: float = 10.0, client: Any = None) -> bytes:
    """Ask each witness to cosign ``new_checkpoint``; return it with the valid cosignature lines appended.

    Each witness gets ``old <old_size_by_witness[name]>`` (0 if absent) and a proof
    from that size (``proof_fn(old) -> list[bytes]``, called only for
    0 < old < new size, in the calling thread). A 409 answer names the witness's
    size: the request is retried once from there. ``old_size_by_witness`` is updated
    with what was learned (the new size where a witness cosigned). Requests run in
    parallel, each bounded by ``timeout`` seconds. Raises ``PolicyNotMet`` (naming each
    witness's problem) unless at least ``policy.threshold`` policy witnesses cosigned.
    ``client`` is an optional ``httpx.Client`` (tests pass one bound to an app).
    """
    eps = [WitnessEndpoint(*w) for w in witnesses]
    note = parse_note(new_checkpoint)
    cp = Checkpoint.from_text(note.text)
    proofs: dict[int, list[bytes]] = {}

    def proof_for(old: int) -> list[bytes]:
        if old == 0 or old >= cp.size:
            return []
        if old not in proofs:
            proofs[old] = list(proof_fn(old))
        return proofs[old]

    own_client = client is None
    if own_client:
        import httpx

        client = httpx.Client(timeout=timeout)
    try:
        def run(batch: list[tuple[WitnessEndpoint, bytes]]) -> list[_Outcome]:
            if len(batch) == 1:
                return [_post(client, ep, body, note.text) for ep, body in batch]
            with ThreadPoolExecutor(max_workers=min(len(batch), 32)) as pool:
                return list(pool.map(lambda a: _post(client, a[0], a[1], note.text), batch))

        def request(ep: WitnessEndpoint, old: int) -> tuple[WitnessEndpoint, bytes]:
            return ep, add_checkpoint_request(old, proof_for(old), new_checkpoint)

        outcomes = run([request(ep, old_size_by_witness.get(ep.key.name, 0)) for ep in eps])
        retry: list[tuple[WitnessEndpoint, bytes]] = []
        for o in outcomes:
            if o.conflict_size is not None:
                old_size_by_witness[o.endpoint.key.name] = o.conflict_size
                if o.conflict_size <= cp.size:
                    try:
                        retry.append(request(o.endpoint, o.conflict_size))
                    except Exception as exc:  # noqa: BLE001 - a proof we cannot make fails this witness only
                        o.problem += f"; no proof from size {o.conflict_size}: {exc}"
                else:
                    o.problem += f", beyond the new checkpoint's size {cp.size}"
        if retry:
            again = {o.endpoint.key.name: o for o in run(retry)}
            outcomes = [again.get(o.endpoint.key.name, o) for o in outcomes]
    finally:
        if own_client:
            client.close()
    got: list[NoteSignature] = []
    problems: list[str] = []
    counted = 0
    for o in outcomes:
        if o.cosignature is not None:
            got.append(o.cosignature)
            old_size_by_witness[o.endpoint.key.name] = cp.size
            if policy.key(o.endpoint.key.name) == o.endpoint.key:
                counted += 1
        else:
            problems.append(f"{o.endpoint.key.name} ({o.endpoint.url}): {o.problem}")
    if counted < policy.threshold:
        raise PolicyNotMet(f"checkpoint of {cp.origin} at size {cp.size} got {counted} cosignature(s), needs "
                           f"{policy.threshold} of {len(policy.witnesses)}" +
                           (f"; {'; '.join(problems)}" if problems else ""))
    return add_signatures(new_checkpoint, *got)


def make_publisher(witnesses: Sequence[WitnessEndpoint | tuple[str, VerifierKey]] | None, policy: WitnessPolicy,
                   log: ConsistencyProver, *, timeout: float = 10.0, client: Any = None
                   ) -> Callable[[int, bytes, list[bytes]], bytes]:
    """The log server's publish step: ``publish(old_size, new_checkpoint, proof) -> cosigned checkpoint``.

    ``witnesses`` defaults to ``policy.endpoints()``. ``proof`` proves ``old_size``
    (the last published size) to the new checkpoint's size. The publisher remembers
    each witness's size between calls (starting from ``old_size``) and asks ``log``
    for other proofs when a witness is elsewhere (409). Calls are serialised.
    Raises ``PolicyNotMet`` when fewer than k witnesses cosign.
    """
    eps = [WitnessEndpoint(*w) for w in (policy.endpoints() if witnesses is None else witnesses)]
    if not eps:
        raise WitnessError("no witness endpoints: give witnesses or URLs in the policy")
    sizes: dict[str, int] = {}
    lock = threading.Lock()

    def publish(old_size: int, new_checkpoint: bytes, proof: list[bytes]) -> bytes:
        new_size = Checkpoint.from_text(parse_note(new_checkpoint).text).size
        given = {old_size: list(proof)}

        def proof_fn(old: int) -> list[bytes]:
            return given[old] if old in given else log.prove_consistency(old, new_size)

        with lock:
            for ep in eps:
                sizes.setdefault(ep.key.name, old_size)
            return collect_cosignatures(eps, sizes, new_checkpoint, proof_fn, policy, timeout=timeout, client=client)

    return publish


__all__ = [
    "COSIGNATURE_HEADER", "ConsistencyProver", "WitnessEndpoint", "WitnessPolicy", "WitnessRefused",
    "add_checkpoint_request", "check_cosigned", "check_times", "collect_cosignatures", "cosign",
    "cosignature_message", "make_publisher", "new_witness_key", "parse_add_checkpoint_request",
    "parse_signature_lines", "verify_cosignature", "witness_verifier",
]
