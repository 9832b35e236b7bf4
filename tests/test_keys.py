"""Ed25519 keys in the C2SP verifier-key and Go sumdb private-key string forms, and key files."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redline.crypto.keys import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    MAX_KEY_NAME,
    SigningKey,
    VerifierKey,
    key_id,
    load_signing_key,
    load_verifier_key,
    save_signing_key,
    validate_key_name,
)
from redline.errors import (
    BadSignature,
    InsecureKeyFile,
    KeyExists,
    KeyMaterialError,
    MalformedInput,
    MalformedKey,
    RedlineError,
)

SEED = bytes(range(32))


@pytest.fixture(scope="module")
def note_cases(vectors: Path) -> list[dict]:
    return json.loads((vectors / "signed-note.json").read_text())["cases"]


def _flip_bit(text: str, bit: int) -> str:
    data = bytearray(text.encode("utf-8"))
    data[bit // 8] ^= 1 << (bit % 8)
    # Invalid UTF-8 still reaches the parser, as lone surrogates.
    return data.decode("utf-8", "surrogateescape")


# --- known answers -------------------------------------------------------------


def test_vector_key_strings_round_trip(note_cases: list[dict]) -> None:
    checked = 0
    for case in note_cases:
        vk = VerifierKey.from_string(case["vkey"])
        assert vk.to_string() == case["vkey"]
        assert vk.alg == ALG_ED25519
        checked += 1
        if "skey" in case:
            sk = SigningKey.from_string(case["skey"])
            assert sk.to_string() == case["skey"]
            assert sk.verifier() == vk
            assert sk.key_id == vk.key_id
            checked += 1
    assert checked == 3


def test_vector_key_id_is_sha256_of_name_newline_type_key(note_cases: list[dict]) -> None:
    vk = VerifierKey.from_string(note_cases[0]["vkey"])
    assert vk.name == "PeterNeumann"
    assert vk.key_id.hex() == "c74f20a3"
    assert vk.key_id == hashlib.sha256(b"PeterNeumann\n\x01" + vk.public).digest()[:4]
    # The C2SP example key.
    ex = VerifierKey.from_string(note_cases[1]["vkey"])
    assert (ex.name, ex.key_id.hex()) == ("example.com/foo", "530d903a")


def test_cosignature_key_id_uses_type_0x04() -> None:
    sk = SigningKey("witness.example/w1", SEED)
    v1, v4 = sk.verifier(), sk.verifier(ALG_COSIGNATURE_V1)
    assert v4.key_id == hashlib.sha256(b"witness.example/w1\n\x04" + sk.public).digest()[:4]
    assert v4.key_id != v1.key_id
    assert VerifierKey.from_string(v4.to_string()) == v4
    assert v4.to_string().split("+", 2)[2] == base64.b64encode(b"\x04" + sk.public).decode()


def test_private_key_with_plus_in_base64_splits_at_most_four_times(note_cases: list[dict]) -> None:
    skey = note_cases[0]["skey"]
    assert skey.count("+") > 4  # the base64 itself holds a '+'
    sk = SigningKey.from_string(skey)
    assert sk.name == "PeterNeumann"


@settings(max_examples=100, deadline=None)
@given(name=st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"), blacklist_characters="+"),
                    min_size=1, max_size=40).filter(lambda s: not any(c.isspace() for c in s)),
       seed=st.binary(min_size=32, max_size=32))
def test_key_strings_round_trip(name: str, seed: bytes) -> None:
    sk = SigningKey(name, seed)
    assert SigningKey.from_string(sk.to_string()) == sk
    assert SigningKey.from_string(sk.to_string()).to_string() == sk.to_string()
    for alg in (ALG_ED25519, ALG_COSIGNATURE_V1):
        vk = sk.verifier(alg)
        assert VerifierKey.from_string(vk.to_string()) == vk
        assert VerifierKey.from_string(vk.to_string()).to_string() == vk.to_string()
    msg = name.encode() + b" says hello"
    sk.verifier().verify(msg, sk.sign(msg))


def test_sign_and_verify() -> None:
    sk = SigningKey("alice", SEED)
    sig = sk.sign(b"message")
    assert len(sig) == 64
    sk.verifier().verify(b"message", sig)
    with pytest.raises(BadSignature, match="'alice' does not verify"):
        sk.verifier().verify(b"messagE", sig)
    with pytest.raises(BadSignature):
        SigningKey("alice", bytes(32)).verifier().verify(b"message", sig)


def test_generate_makes_distinct_keys() -> None:
    a, b = SigningKey.generate("a"), SigningKey.generate("a")
    assert a.seed != b.seed and a.public != b.public and len(a.seed) == 32


def test_seed_not_in_repr() -> None:
    assert SEED.hex() not in repr(SigningKey("k", SEED)) and repr(SEED) not in repr(SigningKey("k", SEED))


# --- names -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a b", "a+b", "", "tab\there", "new\nline", "nb\u00a0sp", "x" * (MAX_KEY_NAME + 1),
                                  "\u2028", "nul\x00"])
def test_invalid_key_names_rejected(name: str) -> None:
    with pytest.raises(MalformedKey):
        validate_key_name(name)
    with pytest.raises(MalformedKey):
        SigningKey(name, SEED)


@pytest.mark.parametrize("name", ["a", "example.com/log", "Ünïcødé", "x" * MAX_KEY_NAME, "a-b_c:d@e"])
def test_valid_key_names(name: str) -> None:
    assert validate_key_name(name) == name
    assert SigningKey.from_string(SigningKey(name, SEED).to_string()).name == name


def test_key_name_with_plus_or_space_rejected_in_strings() -> None:
    vk = SigningKey("ab", SEED).verifier()
    kid = key_id("a b", ALG_ED25519, vk.public).hex()
    b64 = base64.b64encode(b"\x01" + vk.public).decode()
    with pytest.raises(MalformedKey, match="whitespace"):
        VerifierKey.from_string(f"a b+{kid}+{b64}")
    # A '+' in the name shifts the fields: "b" is read as the key ID.
    with pytest.raises(MalformedKey, match="key ID of private key 'a'"):
        SigningKey.from_string(f"PRIVATE+KEY+a+b+{kid}+{b64}")
    with pytest.raises(MalformedKey, match="key ID of verifier key 'a'"):
        VerifierKey.from_string(f"a+b+{kid}+{b64}")


# --- malformed strings ------------------------------------------------------------


def _vk_parts() -> tuple[str, str, str, bytes]:
    vk = SigningKey("alice", SEED).verifier()
    name, kid, b64 = vk.to_string().split("+", 2)
    return name, kid, b64, vk.public


@pytest.mark.parametrize("text,match", [
    ("alice", "name\\+keyid\\+base64"),
    ("alice+0011", "name\\+keyid\\+base64"),
    ("alice+zzzzzzzz+AAAA", "not valid hex"),
    ("alice+00112233+!!!!", "not valid base64"),
    ("alice+00112233+AAAA", "must encode 33 bytes"),
])
def test_verifier_key_malformed(text: str, match: str) -> None:
    with pytest.raises(MalformedKey, match=match):
        VerifierKey.from_string(text)


def test_verifier_key_checks() -> None:
    name, kid, b64, public = _vk_parts()
    assert VerifierKey.from_string(f"{name}+{kid}+{b64}").public == public
    with pytest.raises(MalformedKey, match="lower-case hex"):
        VerifierKey.from_string(f"{name}+{kid.upper()}+{b64}")
    with pytest.raises(MalformedKey, match="does not match the key"):
        VerifierKey.from_string(f"{name}+00000000+{b64}")
    with pytest.raises(MalformedKey, match="does not match the key"):
        VerifierKey.from_string(f"bob+{kid}+{b64}")
    with pytest.raises(MalformedKey, match="unsupported algorithm"):
        VerifierKey.from_string(f"{name}+{kid}+" + base64.b64encode(b"\x02" + public).decode())
    with pytest.raises(MalformedKey, match="not valid base64"):
        VerifierKey.from_string(f"{name}+{kid}+{b64[:-1]}-")
    with pytest.raises(MalformedKey, match="not valid base64"):
        VerifierKey.from_string(f"{name}+{kid}+{b64[:-1]}")
    with pytest.raises(MalformedKey, match="must be 4 bytes"):
        VerifierKey.from_string(f"{name}+{kid}00+{b64}")


def test_signing_key_checks() -> None:
    sk = SigningKey("alice", SEED)
    text = sk.to_string()
    assert text.startswith("PRIVATE+KEY+alice+")
    for bad, match in [
        (text.replace("PRIVATE+KEY", "PUBLIC+KEY", 1), "PRIVATE\\+KEY"),
        (text.replace("PRIVATE+KEY+", "", 1), "PRIVATE\\+KEY"),
        (text.replace(sk.key_id.hex(), "00000000"), "does not match the key"),
        (text.replace("alice", "bob"), "does not match the key"),
        ("PRIVATE+KEY+alice+" + sk.key_id.hex() + "+" + base64.b64encode(b"\x04" + SEED).decode(), "0x01"),
        ("PRIVATE+KEY+alice+" + sk.key_id.hex() + "+" + base64.b64encode(b"\x01" + SEED[:31]).decode(), "0x01"),
    ]:
        with pytest.raises(MalformedKey, match=match):
            SigningKey.from_string(bad)
    with pytest.raises(MalformedKey, match="seed must be 32 bytes"):
        SigningKey("alice", SEED[:31])
    with pytest.raises(MalformedKey, match="public key must be 32 bytes"):
        VerifierKey("alice", sk.public + b"\x00")


def test_malformed_key_is_a_malformed_input() -> None:
    assert issubclass(MalformedKey, MalformedInput) and issubclass(MalformedKey, KeyMaterialError)


# --- one-bit changes -----------------------------------------------------------------


def _check_flipped_verifier(original: VerifierKey, sig_msg: tuple[bytes, bytes], flipped: str) -> None:
    try:
        key = VerifierKey.from_string(flipped)
    except MalformedKey:
        return
    except RedlineError as exc:  # pragma: no cover - the assertion below names it
        pytest.fail(f"{flipped!r} raised {type(exc).__name__}, not MalformedKey")
    # It parsed: then it must be a different key, and one that does not accept the original's signatures.
    assert key != original
    msg, sig = sig_msg
    if key.public == original.public and key.alg == original.alg:
        assert key.name != original.name and key.key_id != original.key_id
    else:
        with pytest.raises(BadSignature):
            key.verify(msg, sig)


def _check_flipped_signer(original: SigningKey, flipped: str) -> None:
    try:
        key = SigningKey.from_string(flipped)
    except MalformedKey:
        return
    assert key != original
    msg = b"flip"
    if key.seed == original.seed:
        assert key.name != original.name and key.key_id != original.key_id
    else:
        with pytest.raises(BadSignature):
            original.verifier().verify(msg, key.sign(msg))


def test_every_one_bit_change_of_vector_keys(note_cases: list[dict]) -> None:
    sk = SigningKey.from_string(note_cases[0]["skey"])
    msg = b"hello"
    sig = sk.sign(msg)
    for case in note_cases:
        vkey = case["vkey"]
        original = VerifierKey.from_string(vkey)
        for bit in range(len(vkey.encode()) * 8):
            _check_flipped_verifier(original, (msg, sig), _flip_bit(vkey, bit))
    skey = note_cases[0]["skey"]
    for bit in range(len(skey.encode()) * 8):
        _check_flipped_signer(sk, _flip_bit(skey, bit))


@settings(max_examples=150, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32),
       name=st.text("abcdefghijklmnopqrstuvwxyz0123456789./-_:@ÄéЖ", min_size=1, max_size=24),
       alg=st.sampled_from([ALG_ED25519, ALG_COSIGNATURE_V1]), data=st.data())
def test_one_bit_change_of_key_strings(seed: bytes, name: str, alg: int, data) -> None:
    sk = SigningKey(name, seed)
    vk = sk.verifier(alg)
    vtext, stext = vk.to_string(), sk.to_string()
    vbit = data.draw(st.integers(0, len(vtext.encode()) * 8 - 1), label="verifier bit")
    sbit = data.draw(st.integers(0, len(stext.encode()) * 8 - 1), label="private bit")
    msg = b"m"
    _check_flipped_verifier(vk, (msg, sk.sign(msg)), _flip_bit(vtext, vbit))
    _check_flipped_signer(sk, _flip_bit(stext, sbit))


# --- key files ---------------------------------------------------------------------------


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_save_and_load_round_trip(tmp_path: Path, umask_022) -> None:
    key = SigningKey.generate("redline.example/log")
    path = tmp_path / "keys" / "log.key"
    pub = save_signing_key(key, path)
    assert pub == tmp_path / "keys" / "log.key.pub"
    assert _mode(path) == 0o600
    assert path.read_text() == key.to_string() + "\n"
    assert pub.read_text() == key.verifier().to_string() + "\n"
    loaded = load_signing_key(path)
    assert loaded == key and loaded.to_string() == key.to_string()
    assert load_verifier_key(pub) == key.verifier()
    assert load_verifier_key(str(pub)) == key.verifier()
    assert load_verifier_key(key.verifier().to_string()) == key.verifier()
    # No temporary files are left behind.
    assert sorted(p.name for p in path.parent.iterdir()) == ["log.key", "log.key.pub"]


@pytest.mark.parametrize("umask", [0, 0o077, 0o022])
def test_private_file_mode_is_exactly_0600(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        save_signing_key(SigningKey("k", SEED), tmp_path / "k.key")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "k.key") == 0o600


def test_save_refuses_to_overwrite(tmp_path: Path) -> None:
    first, second = SigningKey("k", SEED), SigningKey("k", bytes(32))
    path = tmp_path / "k.key"
    save_signing_key(first, path)
    with pytest.raises(KeyExists, match="refusing to overwrite"):
        save_signing_key(second, path)
    assert load_signing_key(path) == first
    # The .pub file alone also blocks a new key.
    path.unlink()
    with pytest.raises(KeyExists, match=r"k\.key\.pub"):
        save_signing_key(second, path)
    assert not path.exists()
    save_signing_key(second, path, overwrite=True)
    assert load_signing_key(path) == second
    assert load_verifier_key(path.with_name("k.key.pub")) == second.verifier()
    assert _mode(path) == 0o600
    save_signing_key(first, path, overwrite=True)
    assert load_signing_key(path) == first
    assert _mode(path) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_load_refuses_readable_key_file(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k.key"
    save_signing_key(SigningKey("k", SEED), path)
    os.chmod(path, mode)
    with pytest.raises(InsecureKeyFile, match=f"{path}.*{mode:04o}"):
        load_signing_key(path)


GARBAGE = [
    b"garbage\n",
    b"",
    b"\xff\xfe\x00binary",
    b"PRIVATE+KEY+k+00000000+" + base64.b64encode(b"\x01" + SEED) + b"\n",
    b"x" * 5000,
]


@pytest.mark.parametrize("content", GARBAGE + [SigningKey("k", SEED).verifier().to_string().encode()])
def test_garbage_private_key_files_raise_malformed_key_naming_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(MalformedKey, match=str(path)):
        load_signing_key(path)


@pytest.mark.parametrize("content", GARBAGE + [SigningKey("k", SEED).to_string().encode()])
def test_garbage_verifier_key_files_raise_malformed_key_naming_the_file(tmp_path: Path, content: bytes) -> None:
    pub = tmp_path / "bad.pub"
    pub.write_bytes(content)
    with pytest.raises(MalformedKey, match=str(pub)):
        load_verifier_key(pub)
    with pytest.raises(MalformedKey, match=str(pub)):
        load_verifier_key(str(pub))


def test_missing_key_files(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError, match="no key file"):
        load_signing_key(tmp_path / "missing.key")
    with pytest.raises(KeyMaterialError, match="no key file"):
        load_verifier_key(tmp_path / "missing.pub")
    # A string that is not a file is read as a key string.
    with pytest.raises(MalformedKey):
        load_verifier_key(str(tmp_path / "missing.pub"))


def test_load_verifier_key_long_key_string() -> None:
    # Longer than a file name may be: must still parse as a key string, not fail on the file system.
    vk = SigningKey("n" * MAX_KEY_NAME, SEED).verifier()
    assert load_verifier_key(vk.to_string()) == vk
    with pytest.raises(MalformedKey):
        load_verifier_key("x" * 5000)


def test_the_public_key_file_never_follows_a_planted_link(tmp_path: Path) -> None:
    """A link planted at any name the writer might use does not make it write through the link."""
    import os

    from redline.crypto.keys import SigningKey, save_signing_key

    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    key_path = tmp_path / "lab.key"
    for name in (f".lab.key.pub.{os.getpid()}.tmp", f".lab.key.{os.getpid()}.tmp"):
        (tmp_path / name).symlink_to(victim)
    try:
        save_signing_key(SigningKey.generate("lab"), key_path)
    except Exception:  # refusing is fine; writing through the link is not
        pass
    assert victim.read_text() == "precious\n"
    if key_path.exists():
        assert not (tmp_path / "lab.key.pub").is_symlink()
        assert oct((tmp_path / "lab.key.pub").stat().st_mode & 0o777) == "0o644"


def test_a_small_order_key_cannot_be_admitted_and_its_forgeries_never_verify() -> None:
    """The identity point as a public key: under a cofactorless verifier (OpenSSL's, which redline used before)
    R = identity, S = 0 is a valid signature of every message, so a party with such a key could deny anything it
    signed. The key is refused as malformed, and the forged signature does not verify even for a key object built
    around the check."""
    from redline.crypto.keys import VerifierKey
    from redline.errors import BadSignature, MalformedKey

    identity = bytes([1]) + bytes(31)
    with pytest.raises(MalformedKey, match="not a canonical point of prime order"):
        VerifierKey("lab-weak", identity)
    key = object.__new__(VerifierKey)
    object.__setattr__(key, "name", "lab-weak")
    object.__setattr__(key, "public", identity)
    with pytest.raises(BadSignature):
        VerifierKey.verify(key, b"I never said this", identity + bytes(32))


def test_a_non_canonical_s_is_refused() -> None:
    from redline.crypto.keys import SigningKey
    from redline.errors import BadSignature

    key = SigningKey.generate("lab")
    sig = key.sign(b"message")
    order = 2**252 + 27742317777372353535851937790883648493
    s = int.from_bytes(sig[32:], "little") + order  # the same point equation, S not reduced
    if s < 2**256:
        with pytest.raises(BadSignature):
            key.verifier().verify(b"message", sig[:32] + s.to_bytes(32, "little"))
    key.verifier().verify(b"message", sig)
