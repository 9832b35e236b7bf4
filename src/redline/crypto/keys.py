"""Ed25519 keys in the C2SP signed-note forms.

A verifier key is ``name+hex(keyID)+base64(0x01 || public key)`` (c2sp.org/signed-note)
and a private key is the Go ``sumdb/note`` form
``PRIVATE+KEY+name+hex(keyID)+base64(0x01 || seed)``. The key ID is the first four
bytes of ``SHA-256(name || 0x0A || type || public key)``: type 0x01 for Ed25519 note
signatures, 0x04 for tlog-cosignature/v1 witness signatures.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import stat
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.bindings import crypto_core_ed25519_is_valid_point, crypto_sign_open
from nacl.exceptions import BadSignatureError

try:  # libsodium's crypto_sign_open itself, as nacl.bindings.crypto_sign_open calls it, minus the copy it returns
    _binding: Any = importlib.import_module("nacl._sodium")
    _ffi, _sodium = _binding.ffi, _binding.lib
except ImportError:  # pragma: no cover - PyNaCl has shipped this module since 1.0
    _ffi = _sodium = None

from redline.crypto.encoding import b64decode, b64encode, hexdecode
from redline.errors import BadSignature, InsecureKeyFile, KeyExists, KeyMaterialError, MalformedInput, MalformedKey

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04

#: Longest key name accepted; names travel on every signature line.
MAX_KEY_NAME = 256


def validate_key_name(name: str) -> str:
    """Return ``name`` if it is a valid key name: non-empty, no whitespace, no ``+``."""
    if not name:
        raise MalformedKey("key name is empty")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_KEY_NAME:
        raise MalformedKey(f"key name is longer than {MAX_KEY_NAME} bytes")
    if "+" in name:
        raise MalformedKey(f"key name {name!r} contains '+'")
    for ch in name:
        if ch.isspace() or unicodedata.category(ch) in ("Cc", "Cs", "Zs", "Zl", "Zp"):
            raise MalformedKey(f"key name {name!r} contains whitespace or a control character")
    return name


def key_id(name: str, alg: int, public: bytes) -> bytes:
    """The 4-byte key ID of a named public key of algorithm ``alg``."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public).digest()[:4]


def ed25519_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` (64 bytes) is the Ed25519 signature of ``message`` by ``public``: libsodium's
    ``crypto_sign_open``, the one verification every signature in redline goes through."""
    try:
        if len(signature) != 64 or len(public) != 32:
            return False
        signed = bytes(signature) + bytes(message)
        if _sodium is not None:
            # the opened message is not wanted: libsodium writes it nowhere when given NULL
            return bool(_sodium.crypto_sign_open(_ffi.NULL, _ffi.NULL, signed, len(signed), bytes(public)) == 0)
        crypto_sign_open(signed, bytes(public))
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True)
class VerifierKey:
    """A named Ed25519 public key that verifies signed notes."""

    name: str
    public: bytes
    alg: int = ALG_ED25519
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)
    _fingerprint: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        validate_key_name(self.name)
        if len(self.public) != 32:
            raise MalformedKey(f"key {self.name!r}: Ed25519 public key must be 32 bytes, got {len(self.public)}")
        if self.alg not in (ALG_ED25519, ALG_COSIGNATURE_V1):
            raise MalformedKey(f"key {self.name!r}: unsupported algorithm byte {self.alg:#04x}")
        if not crypto_core_ed25519_is_valid_point(self.public):
            # a small-order (or non-canonical) point: under a cofactorless verifier anyone could sign as this key
            # (R = identity, S = 0 verifies every message for the identity key), so it could deny what it signed
            raise MalformedKey(f"key {self.name!r}: the Ed25519 public key is not a canonical point of prime order")
        object.__setattr__(self, "_key", Ed25519PublicKey.from_public_bytes(self.public))
        object.__setattr__(self, "_fingerprint", hashlib.sha256(self.public).hexdigest())

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID used in signature lines."""
        return key_id(self.name, self.alg, self.public)

    @property
    def fingerprint(self) -> str:
        """Hex SHA-256 of the raw public key: the DSSE ``keyid`` redline uses (computed once)."""
        return self._fingerprint

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise ``BadSignature`` unless ``signature`` is this key's Ed25519 signature of ``message``.

        Verified by libsodium (``crypto_sign_open``), about twice as fast as OpenSSL here, and the stricter of the
        two: it also refuses non-canonical and small-order points, so whatever redline accepts, RFC 8032
        verifiers (OpenSSL, Go) accept too. Every verification in redline goes this one way, so a replay
        anywhere accepts exactly the same statements.
        """
        if len(signature) != 64:
            raise BadSignature(f"signature by key {self.name!r} is {len(signature)} bytes, not 64", key_name=self.name)
        if not ed25519_verify(self.public, message, signature):
            raise BadSignature(f"signature by key {self.name!r} does not verify", key_name=self.name)

    def to_string(self) -> str:
        """The C2SP verifier-key string ``name+hexid+base64(alg||key)``."""
        return f"{self.name}+{self.key_id.hex()}+{b64encode(bytes([self.alg]) + self.public)}"

    @classmethod
    def from_string(cls, text: str) -> VerifierKey:
        """Parse a C2SP verifier-key string, checking the key ID."""
        text = text.strip("\n")
        parts = text.split("+", 2)
        if len(parts) != 3:
            raise MalformedKey(f"verifier key {text[:40]!r} does not have the form name+keyid+base64")
        name, hexid, b64 = parts
        validate_key_name(name)
        try:
            kid = hexdecode(hexid, what=f"key ID of verifier key {name!r}", length=4)
            raw = b64decode(b64, what=f"verifier key {name!r}")
        except MalformedInput as exc:
            raise MalformedKey(str(exc)) from exc
        if len(raw) != 33:
            raise MalformedKey(f"verifier key {name!r} must encode 33 bytes (algorithm + key), got {len(raw)}")
        key = cls(name=name, public=raw[1:], alg=raw[0])
        if key.key_id != kid:
            raise MalformedKey(f"verifier key {name!r}: key ID {hexid} does not match the key")
        return key


@dataclass(frozen=True)
class SigningKey:
    """A named Ed25519 private key (its 32-byte seed) that signs notes and envelopes."""

    name: str
    seed: bytes = field(repr=False)
    _key: Ed25519PrivateKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        validate_key_name(self.name)
        if len(self.seed) != 32:
            raise MalformedKey(f"key {self.name!r}: Ed25519 seed must be 32 bytes, got {len(self.seed)}")
        object.__setattr__(self, "_key", Ed25519PrivateKey.from_private_bytes(self.seed))

    @classmethod
    def generate(cls, name: str) -> SigningKey:
        """A fresh key from the operating system's randomness."""
        return cls(name=name, seed=os.urandom(32))

    @property
    def public(self) -> bytes:
        """The raw 32-byte public key."""
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def verifier(self, alg: int = ALG_ED25519) -> VerifierKey:
        """The matching verifier key."""
        return VerifierKey(name=self.name, public=self.public, alg=alg)

    @property
    def key_id(self) -> bytes:
        """The 4-byte note key ID."""
        return key_id(self.name, ALG_ED25519, self.public)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return self._key.sign(message)

    def to_string(self) -> str:
        """The Go sumdb private-key string ``PRIVATE+KEY+name+hexid+base64(0x01||seed)``."""
        return f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+{b64encode(bytes([ALG_ED25519]) + self.seed)}"

    @classmethod
    def from_string(cls, text: str) -> SigningKey:
        """Parse a Go sumdb private-key string, checking the key ID."""
        text = text.strip("\n")
        parts = text.split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise MalformedKey("private key does not have the form PRIVATE+KEY+name+keyid+base64")
        _, _, name, hexid, b64 = parts
        validate_key_name(name)
        try:
            kid = hexdecode(hexid, what=f"key ID of private key {name!r}", length=4)
            raw = b64decode(b64, what=f"private key {name!r}")
        except MalformedInput as exc:
            raise MalformedKey(str(exc)) from exc
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise MalformedKey(f"private key {name!r} must encode 0x01 followed by a 32-byte seed")
        key = cls(name=name, seed=raw[1:])
        if key.key_id != kid:
            raise MalformedKey(f"private key {name!r}: key ID {hexid} does not match the key")
        return key


def save_signing_key(key: SigningKey, path: Path, *, overwrite: bool = False) -> Path:
    """Write ``key`` to ``path`` with mode 0600 and its verifier key to ``path.pub``.

    The private file is created exclusively: an existing file is never replaced
    unless ``overwrite`` is given, and then only by an atomic rename.
    """
    path = Path(path)
    pub = path.with_name(path.name + ".pub")
    if not overwrite:
        for p in (path, pub):
            if p.exists():
                raise KeyExists(f"{p} already exists; refusing to overwrite a key")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # O_EXCL, 0600
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(key.to_string() + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if path appeared meanwhile
            os.unlink(tmp)
    except FileExistsError as exc:
        raise KeyExists(f"{path} already exists; refusing to overwrite a key") from exc
    finally:
        if os.path.lexists(tmp):
            tmp.unlink()
    # The public file too goes through a fresh, unpredictable name created exclusively (mkstemp: O_EXCL, so a
    # planted symlink is never followed), then an atomic rename in the same directory.
    fd, pub_tmp = tempfile.mkstemp(dir=pub.parent, prefix=f".{pub.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(key.verifier().to_string() + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(pub_tmp, 0o644)
        os.replace(pub_tmp, pub)
    finally:
        if os.path.lexists(pub_tmp):
            os.unlink(pub_tmp)
    return pub


def _read_key_text(path: Path) -> str:
    """A key file's text, reading at most 4 KiB + 1 whatever its size claims (a file may grow while read)."""
    with path.open("rb") as f:
        data = f.read(4097)
    if len(data) > 4096:
        raise MalformedKey(f"{path} is too large to be a key file")
    return data.decode("utf-8")


def load_signing_key(path: Path) -> SigningKey:
    """Read a private key file, refusing one that others can read."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise KeyMaterialError(f"no key file at {path}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise KeyMaterialError(f"{path} is not a regular file")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InsecureKeyFile(f"{path} has mode {stat.S_IMODE(st.st_mode):04o}; private keys must be 0600")
    if st.st_size > 4096:
        raise MalformedKey(f"{path} is {st.st_size} bytes, too large to be a key file")
    try:
        return SigningKey.from_string(_read_key_text(path))
    except MalformedKey as exc:
        raise MalformedKey(f"{path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise MalformedKey(f"{path}: not UTF-8 text") from exc


def load_verifier_key(text_or_path: str | Path) -> VerifierKey:
    """A verifier key from its string or from a file holding it."""
    candidate = Path(text_or_path)
    try:
        is_file = isinstance(text_or_path, Path) or candidate.is_file()
    except OSError:  # e.g. a long key string is not a valid file name
        is_file = False
    if is_file:
        try:
            st = candidate.stat()
            if not stat.S_ISREG(st.st_mode):
                raise KeyMaterialError(f"{candidate} is not a regular file")
            if st.st_size > 4096:
                raise MalformedKey(f"{candidate} is too large to be a key file")
            text = _read_key_text(candidate)
        except FileNotFoundError as exc:
            raise KeyMaterialError(f"no key file at {candidate}") from exc
        except UnicodeDecodeError as exc:
            raise MalformedKey(f"{candidate}: not UTF-8 text") from exc
        except OSError as exc:
            raise KeyMaterialError(f"cannot read key file {candidate}: {exc.strerror or exc}") from exc
        try:
            return VerifierKey.from_string(text)
        except MalformedKey as exc:
            raise MalformedKey(f"{candidate}: {exc}") from exc
    return VerifierKey.from_string(str(text_or_path))
