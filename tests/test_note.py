"""C2SP signed notes: known answers, parsing rules and tamper resistance."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redline.crypto.keys import ALG_COSIGNATURE_V1, SigningKey, VerifierKey
from redline.crypto.note import (
    EM_DASH,
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    Note,
    NoteSignature,
    add_signatures,
    open_note,
    parse_note,
    sign_note,
)
from redline.errors import (
    BadSignature,
    InputTooLarge,
    KeyMaterialError,
    MalformedInput,
    MalformedKey,
    RedlineError,
    UnknownKey,
)

TEXT = "redline.example/log\n42\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"


def key(name: str, n: int = 0) -> SigningKey:
    return SigningKey(name, bytes([n]) * 32)


def sig_line(name: str, raw: bytes) -> bytes:
    return f"{EM_DASH} {name} {base64.b64encode(raw).decode()}\n".encode()


def forged_line(k: SigningKey, text: str) -> bytes:
    """A signature line built by hand (bypassing sign_note's checks)."""
    return sig_line(k.name, k.key_id + k.sign(text.encode()))


@pytest.fixture(scope="module")
def cases(vectors: Path) -> list[dict]:
    return json.loads((vectors / "signed-note.json").read_text())["cases"]


# --- known answers ------------------------------------------------------------


def test_vector_signs_byte_for_byte(cases: list[dict]) -> None:
    signed = [c for c in cases if "skey" in c]
    assert len(signed) == 1
    for case in signed:
        sk = SigningKey.from_string(case["skey"])
        assert sign_note(case["text"], sk) == case["signed"].encode("utf-8")


@pytest.mark.parametrize("index", [0, 1])
def test_vector_verifies(cases: list[dict], index: int) -> None:
    case = cases[index]
    vk = VerifierKey.from_string(case["vkey"])
    note, verified = open_note(case["signed"].encode("utf-8"), [vk])
    assert note.text == case["text"]
    assert verified == (vk,)
    assert [s.name for s in note.signatures] == [vk.name]
    assert note.signatures[0].key_id == vk.key_id
    assert note.encode() == case["signed"].encode("utf-8")
    # The other vector's key is unknown here.
    other = VerifierKey.from_string(cases[1 - index]["vkey"])
    with pytest.raises(UnknownKey, match=vk.name):
        open_note(case["signed"].encode("utf-8"), [other])


def test_vector_every_one_bit_change_is_rejected(cases: list[dict]) -> None:
    for case in cases:
        vk = VerifierKey.from_string(case["vkey"])
        data = case["signed"].encode("utf-8")
        for bit in range(len(data) * 8):
            _assert_rejected(_flip(data, bit), [vk], data)


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _assert_rejected(data: bytes, known: list[VerifierKey], original: bytes) -> None:
    """``data`` (``original`` changed) is refused, unless the change is to the unused low bits of a signature's
    base64, which Go's decoder ignores too: then it reads as the very same text and signatures."""
    try:
        note, _ = open_note(data, known)
    except RedlineError as exc:
        assert isinstance(exc, (MalformedInput, BadSignature)), type(exc)
        return
    assert _same_signatures(note, parse_note(original)), f"tampered note accepted: {data!r}"
    assert note.encode() == data


def _same_signatures(note: Note, other: Note) -> bool:
    """The same text and signatures, one of them read from base64 with non-zero unused bits."""
    return note.text == other.text and any(s.encoded is not None for s in note.signatures) and \
        [(s.name, s.key_id, s.signature) for s in note.signatures] == \
        [(s.name, s.key_id, s.signature) for s in other.signatures]


# --- round trips -----------------------------------------------------------------


def test_sign_and_open_round_trip() -> None:
    a, b = key("a.example/log", 1), key("b.example/witness", 2)
    data = sign_note(TEXT, a, b)
    note, verified = open_note(data, [b.verifier(), a.verifier()])
    assert note.text == TEXT
    assert verified == (a.verifier(), b.verifier())  # signature order
    assert [s.name for s in note.signatures] == ["a.example/log", "b.example/witness"]
    assert parse_note(data) == note


def test_note_layout() -> None:
    k = key("k", 1)
    data = sign_note("hello\n", k)
    text, rest = data.split(b"\n\n")
    assert text == b"hello"
    assert rest.startswith("\u2014 k ".encode())
    assert rest.endswith(b"\n") and rest.count(b"\n") == 1
    raw = base64.b64decode(rest.split(b" ")[2])
    assert raw[:4] == k.key_id and len(raw) == 68
    k.verifier().verify(b"hello\n", raw[4:])  # covers the text with its final newline


def test_add_signatures_appends_cosignatures() -> None:
    log, w = key("log", 1), key("w", 2)
    data = sign_note(TEXT, log)
    extra = NoteSignature(w.name, w.key_id, w.sign(TEXT.encode()))
    both = add_signatures(data, extra)
    assert both == data + extra.line().encode()
    _, verified = open_note(both, [log.verifier(), w.verifier()])
    assert verified == (log.verifier(), w.verifier())


def test_cosignature_keys_are_left_to_the_witness_module() -> None:
    log, w = key("log", 1), key("w", 2)
    cosig = w.verifier(ALG_COSIGNATURE_V1)
    line = NoteSignature(w.name, cosig.key_id, b"\x00" * 72)  # timestamp + signature: not a note signature
    data = add_signatures(sign_note(TEXT, log), line)
    _, verified = open_note(data, [log.verifier(), cosig])
    assert verified == (log.verifier(),)
    with pytest.raises(UnknownKey):
        open_note(data, [cosig])


# --- parsing rules (FORMATS.md) -----------------------------------------------------


def test_split_at_last_blank_line() -> None:
    k = key("k", 1)
    # Lines that look like signatures belong to the text when a later blank line follows.
    text = f"origin\n{EM_DASH} k AAAA\n"
    data = text.encode() + b"\n" + forged_line(k, text)
    note, verified = open_note(data, [k.verifier()])
    assert note.text == text and len(note.signatures) == 1 and verified == (k.verifier(),)
    # With two blank lines, the text is everything up to the last one -- and then holds a blank line, which
    # c2sp.org/signed-note allows ("The note text MAY contain empty lines") and Go's note.Open accepts.
    data = b"a\n\nb\n\n" + forged_line(k, "a\n\nb\n")
    note, verified = open_note(data, [k.verifier()])
    assert note.text == "a\n\nb\n" and verified == (k.verifier(),)
    with pytest.raises(MalformedInput, match="must not contain a blank line"):
        sign_note("a\n\nb\n", k)  # redline itself writes none
    # A blank line between signature lines makes the first signature part of the text.
    j = key("j", 2)
    data = sign_note(TEXT, k) + b"\n" + forged_line(j, TEXT)
    assert parse_note(data).text == sign_note(TEXT, k).decode()
    with pytest.raises(BadSignature):  # j signed TEXT, not the text up to the last blank line
        open_note(data, [j.verifier()])


def test_no_blank_line_rejected() -> None:
    k = key("k", 1)
    with pytest.raises(MalformedInput, match="no blank line"):
        parse_note(TEXT.encode() + forged_line(k, TEXT))


@pytest.mark.parametrize("dash", ["-", "\u2013", "\u2015", "--", "\u2014\u2014"])
def test_em_dash_required(dash: str) -> None:
    k = key("k", 1)
    good = sign_note(TEXT, k)
    bad = good.replace(EM_DASH.encode(), dash.encode(), 1)
    assert bad != good
    with pytest.raises(MalformedInput, match="em dash"):
        open_note(bad, [k.verifier()])


def test_em_dash_must_be_followed_by_one_space() -> None:
    k = key("k", 1)
    good = sign_note(TEXT, k)
    for bad in (good.replace(f"{EM_DASH} ".encode(), EM_DASH.encode()),
                good.replace(f"{EM_DASH} ".encode(), f"{EM_DASH}  ".encode()),
                good.replace(b" k ", b" k  ")):
        with pytest.raises(MalformedInput):
            open_note(bad, [k.verifier()])


def test_key_id_is_checked() -> None:
    k = key("k", 1)
    impostor = key("k", 2)  # same name, different key: different key ID
    assert impostor.key_id != k.key_id
    with pytest.raises(UnknownKey):
        open_note(sign_note(TEXT, impostor), [k.verifier()])
    # The right name and signature under a wrong key ID is not the key's signature.
    wrong_id = sig_line("k", impostor.key_id + k.sign(TEXT.encode()))
    with pytest.raises(UnknownKey):
        open_note(TEXT.encode() + b"\n" + wrong_id, [k.verifier()])
    # The right key ID under another name is not either.
    renamed = sig_line("j", k.key_id + k.sign(TEXT.encode()))
    with pytest.raises(UnknownKey):
        open_note(TEXT.encode() + b"\n" + renamed, [k.verifier()])


def test_unknown_keys_are_ignored() -> None:
    known = key("known", 1)
    strangers = [key(f"stranger{i}", 10 + i) for i in range(5)]
    data = sign_note(TEXT, strangers[0], strangers[1], known, *strangers[2:])
    # A garbage signature from an unknown key is ignored too.
    data += sig_line("nobody", b"\x01\x02\x03\x04" + b"\x00" * 64)
    note, verified = open_note(data, [known.verifier()])
    assert verified == (known.verifier(),)
    assert len(note.signatures) == 7


def test_only_unknown_keys_raises_unknown_key() -> None:
    data = sign_note(TEXT, key("s1", 1), key("s2", 2))
    with pytest.raises(UnknownKey, match="no signature from a known key.*s1, s2"):
        open_note(data, [key("known", 3).verifier()])
    with pytest.raises(UnknownKey):
        open_note(data, [])


def test_at_least_sixteen_signatures_accepted() -> None:
    keys = [key(f"witness{i}", i + 1) for i in range(20)]
    data = sign_note(TEXT, *keys)
    note, verified = open_note(data, [keys[-1].verifier()])
    assert verified == (keys[-1].verifier(),)
    assert len(note.signatures) == 20
    _, verified = open_note(data, [k.verifier() for k in keys])
    assert len(verified) == 20


def test_signature_count_limit() -> None:
    known = key("known", 1)
    filler = [sig_line(f"u{i}", i.to_bytes(4, "big") + bytes(64)) for i in range(MAX_SIGNATURES)]
    at_limit = sign_note(TEXT, known) + b"".join(filler[: MAX_SIGNATURES - 1])
    _, verified = open_note(at_limit, [known.verifier()])
    assert verified == (known.verifier(),)
    over = at_limit + filler[-1]
    with pytest.raises(InputTooLarge, match=f"{MAX_SIGNATURES + 1} signatures"):
        open_note(over, [known.verifier()])
    assert MAX_SIGNATURES == 100


@pytest.mark.parametrize("ch", ["\r", "\x00", "\x1b", "\t", "\x7f", "\x0b", "\x0c"])
def test_control_characters_rejected(ch: str) -> None:
    k = key("k", 1)
    text = f"origin{ch}\n42\n"
    with pytest.raises(MalformedInput, match=f"control character U\\+{ord(ch):04X}"):
        sign_note(text, k)
    # A note carrying one, with a valid signature over it, is rejected on parsing -- except U+007F, which
    # c2sp.org/signed-note and Go's note.Open allow (only controls below U+0020 other than newline are refused).
    data = text.encode() + b"\n" + forged_line(k, text)
    if ch == "\x7f":
        assert open_note(data, [k.verifier()])[0].text == text
        return
    with pytest.raises(MalformedInput, match="control character"):
        open_note(data, [k.verifier()])
    # Also in the signature block.
    data = sign_note("origin\n", k)[:-1] + ch.encode() + b"\n"
    with pytest.raises(MalformedInput, match="control character"):
        open_note(data, [k.verifier()])


def test_crlf_line_endings_rejected() -> None:
    k = key("k", 1)
    data = sign_note(TEXT, k).replace(b"\n", b"\r\n")
    with pytest.raises(MalformedInput, match="U\\+000D"):
        open_note(data, [k.verifier()])


def test_invalid_utf8_rejected() -> None:
    k = key("k", 1)
    data = b"caf\xe9\n\n" + sig_line("k", k.key_id + bytes(64))
    with pytest.raises(MalformedInput, match="not valid UTF-8"):
        parse_note(data)


def test_size_bound() -> None:
    k = key("k", 1)
    line_len = len(forged_line(k, "x\n"))
    # Exactly MAX_NOTE_BYTES: text, blank line, one signature line.
    body = MAX_NOTE_BYTES - line_len - 1
    text = "a" * (body - 1) + "\n"
    data = sign_note(text, k)
    assert len(data) == MAX_NOTE_BYTES
    note, _ = open_note(data, [k.verifier()])
    assert note.text == text
    text = "a" * body + "\n"
    data = sign_note(text, k)
    assert len(data) == MAX_NOTE_BYTES + 1
    with pytest.raises(InputTooLarge, match=f"over the limit of {MAX_NOTE_BYTES}"):
        open_note(data, [k.verifier()])


@pytest.mark.parametrize("text", ["no newline", "", "two\nlines", "\n", "a\n\nb\n", "\nleading\n"])
def test_bad_text_rejected_at_signing(text: str) -> None:
    with pytest.raises(MalformedInput):
        sign_note(text, key("k", 1))


def test_text_must_end_in_newline_message() -> None:
    with pytest.raises(MalformedInput, match="must end in a newline"):
        sign_note("origin\n42", key("k", 1))


def test_sign_note_needs_a_key() -> None:
    with pytest.raises(MalformedKey, match="at least one key"):
        sign_note(TEXT)


@pytest.mark.parametrize("name", ["a b", "a+b"])
def test_key_names_with_space_or_plus_rejected(name: str) -> None:
    with pytest.raises(MalformedKey):
        SigningKey(name, bytes(32))
    raw = b"\x00\x01\x02\x03" + bytes(64)
    with pytest.raises(MalformedInput, match="signature line 1"):
        parse_note(TEXT.encode() + b"\n" + sig_line(name, raw))


def test_repeated_signatures_from_one_known_key_are_skipped_as_go_does() -> None:
    """Go's note.Open verifies a known key's first line and drops its later lines unverified ("drop repeated
    signatures by a single verifier"): a bad repeat after a good first line is ignored, a bad first line is not."""
    k = key("k", 1)
    data = sign_note(TEXT, k, k)
    note, verified = open_note(data, [k.verifier()])
    assert verified == (k.verifier(),) and len(note.signatures) == 2 and note.encode() == data
    garbage = sig_line("k", k.key_id + bytes(64))
    good_then_bad = sign_note(TEXT, k) + garbage
    note, verified = open_note(good_then_bad, [k.verifier()])
    assert verified == (k.verifier(),) and note.signatures[1].signature == bytes(64)
    short = sig_line("k", k.key_id + b"\x00")  # a repeat of any length: never looked at
    assert open_note(sign_note(TEXT, k) + short, [k.verifier()])[1] == (k.verifier(),)
    bad_then_good = TEXT.encode() + b"\n" + garbage + forged_line(k, TEXT)
    with pytest.raises(BadSignature, match="'k' does not verify") as err:
        open_note(bad_then_good, [k.verifier()])
    assert (err.value.key_name, err.value.key_id) == ("k", k.key_id.hex())
    # Duplicates from a key the verifier does not know are ignored with the key.
    data = sign_note(TEXT, k, key("u", 2), key("u", 2))
    _, verified = open_note(data, [k.verifier()])
    assert verified == (k.verifier(),)
    # A repeat is still parsed: a malformed one is refused.
    with pytest.raises(MalformedInput, match="signature line 2"):
        open_note(sign_note(TEXT, k) + f"{EM_DASH} k AAAA!AAA\n".encode(), [k.verifier()])


def test_a_key_given_twice_is_one_key_and_two_keys_sharing_an_id_are_ambiguous() -> None:
    k, j = key("k", 1), key("j", 2)
    _, verified = open_note(sign_note(TEXT, k), [k.verifier(), k.verifier()])
    assert verified == (k.verifier(),)
    # Two keys named "collide" with one key ID (a birthday collision of the 32-bit ID, found by trying seeds):
    # Go's verifier list calls the pair ambiguous, once a signature line names it.
    c1, c2 = (SigningKey("collide", s.to_bytes(32, "big")) for s in (74_721, 95_125))
    assert c1.key_id == c2.key_id and c1.verifier() != c2.verifier()
    with pytest.raises(KeyMaterialError, match=f"ambiguous key collide\\+{c1.key_id.hex()}"):
        open_note(sign_note(TEXT, c1), [c1.verifier(), c2.verifier()])
    _, verified = open_note(sign_note(TEXT, j), [j.verifier(), c1.verifier(), c2.verifier()])
    assert verified == (j.verifier(),)  # no line names the ambiguous key
    with pytest.raises(BadSignature):  # one of them known: the other's signature does not verify
        open_note(sign_note(TEXT, c2), [c1.verifier()])


def test_bad_signature_from_known_key() -> None:
    k, other = key("k", 1), key("other", 2)
    bad = TEXT.encode() + b"\n" + sig_line("k", k.key_id + k.sign(b"something else\n"))
    with pytest.raises(BadSignature, match="'k' does not verify"):
        open_note(bad, [k.verifier()])
    # A good signature from another known key does not excuse a bad one.
    bad_then_good = bad + forged_line(other, TEXT)
    with pytest.raises(BadSignature):
        open_note(bad_then_good, [k.verifier(), other.verifier()])
    good_then_bad = sign_note(TEXT, other) + sig_line("k", k.key_id + k.sign(b"x\n"))
    with pytest.raises(BadSignature):
        open_note(good_then_bad, [k.verifier(), other.verifier()])
    # But ignored when the key is unknown.
    _, verified = open_note(good_then_bad, [other.verifier()])
    assert verified == (other.verifier(),)


def test_wrong_length_signature_from_known_key() -> None:
    k = key("k", 1)
    for sig in (k.sign(TEXT.encode())[:63], k.sign(TEXT.encode()) + b"\x00", b"\x00"):
        with pytest.raises(BadSignature, match="not 64"):
            open_note(TEXT.encode() + b"\n" + sig_line("k", k.key_id + sig), [k.verifier()])


@pytest.mark.parametrize("tail,match", [
    (b"", "empty"),
    (f"{EM_DASH} k AAAA".encode(), "does not end in a newline"),
    (f"{EM_DASH} k\n".encode(), "is not"),
    (f"{EM_DASH} k AAAA AAAA\n".encode(), "is not"),
    (f"{EM_DASH} k AAAAAA==\n".encode(), "too short"),
    (f"{EM_DASH} k AAAA!AAA\n".encode(), "not valid base64"),
    (f"{EM_DASH}  AAAAAAAA\n".encode(), "key name is empty"),
])
def test_malformed_signature_lines(tail: bytes, match: str) -> None:
    with pytest.raises(MalformedInput, match=match):
        parse_note(TEXT.encode() + b"\n" + tail)


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _with_unused_bits(b64: str, bits: int) -> str:
    """``b64`` (padded) with the unused low bits of its last character before the padding set to ``bits``."""
    pad = len(b64) - len(b64.rstrip("="))
    unused = {1: 2, 2: 4}[pad]
    last = ALPHABET.index(b64[-pad - 1])
    assert last & ((1 << unused) - 1) == 0
    return b64[: -pad - 1] + ALPHABET[last | (bits & ((1 << unused) - 1))] + "=" * pad


def test_non_canonical_signature_base64_is_read_as_go_reads_it() -> None:
    """Go's base64.StdEncoding (not Strict) ignores the unused low bits of the last character: such a line reads
    as the same signature, and the note keeps the text it read."""
    k = key("k", 1)
    good = sign_note(TEXT, k)
    b64 = good.decode().rsplit(" ", 1)[1].rstrip("\n")
    assert b64.endswith("=") and not b64.endswith("==")  # 68 bytes: two unused bits in the last char
    for bits in (1, 2, 3):
        odd = _with_unused_bits(b64, bits)
        data = good.replace(b64.encode(), odd.encode())
        note, verified = open_note(data, [k.verifier()])
        assert verified == (k.verifier(),)
        assert note.signatures[0].encoded == odd and note.encode() == data
        assert parse_note(data).signatures[0].signature == parse_note(good).signatures[0].signature
    assert parse_note(good).signatures[0].encoded is None
    # "==" padding (one byte in the last group) leaves four unused bits.
    raw = k.key_id + bytes(63)  # 67 bytes
    canonical = base64.b64encode(raw).decode()
    assert canonical.endswith("==")
    odd = _with_unused_bits(canonical, 0b1111)
    data = TEXT.encode() + f"\n{EM_DASH} u {odd}\n".encode() + forged_line(key("j", 2), TEXT)
    note = open_note(data, [key("j", 2).verifier()])[0]
    assert note.signatures[0].signature == bytes(63) and note.encode() == data


@pytest.mark.parametrize("b64", [
    "AAAAAAA",  # no padding (Go's StdEncoding requires it)
    "AAAAAAAA=",  # padding after a full group
    "AAAAAA=A",  # data after padding
    "AAAAAA===",
    "AAAAA===",
    "AAAA-_AA",  # the URL-safe alphabet
    "AAAA AAA",
    "AAAAAAA.",
    "AAAAAAÀA",
])
def test_base64_go_refuses_is_refused(b64: str) -> None:
    with pytest.raises(MalformedInput, match="signature line 1"):
        parse_note(TEXT.encode() + f"\n{EM_DASH} k {b64}\n".encode())


def test_note_encode_round_trip() -> None:
    k = key("k", 1)
    data = sign_note(TEXT, k, key("j", 2))
    note = parse_note(data)
    assert isinstance(note, Note)
    assert note.encode() == data


# --- Hypothesis: one-bit changes of random notes --------------------------------------

line_text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=30)
texts = st.lists(line_text, min_size=1, max_size=4).map(lambda lines: "\n".join(lines) + "\n")
names = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Z"), blacklist_characters="+"),
                min_size=1, max_size=20).filter(lambda s: not any(c.isspace() for c in s))


@settings(max_examples=200, deadline=None)
@given(text=texts, name=names, seed=st.binary(min_size=32, max_size=32), data=st.data())
def test_one_bit_change_of_a_signed_note_is_rejected(text: str, name: str, seed: bytes, data) -> None:
    k = SigningKey(name, seed)
    note = sign_note(text, k)
    assert open_note(note, [k.verifier()])[0].text == text
    bit = data.draw(st.integers(0, len(note) * 8 - 1), label="bit")
    _assert_rejected(_flip(note, bit), [k.verifier()], note)


@settings(max_examples=100, deadline=None)
@given(text=texts, data=st.data())
def test_one_bit_change_with_two_known_signers(text: str, data) -> None:
    a, b = key("a.example", 1), key("b.example", 2)
    note = sign_note(text, a, b)
    bit = data.draw(st.integers(0, len(note) * 8 - 1), label="bit")
    try:
        opened, verified = open_note(_flip(note, bit), [a.verifier(), b.verifier()])
    except RedlineError as exc:
        assert isinstance(exc, (MalformedInput, BadSignature))
    else:
        # Only a change to one signer's name or key ID can leave the note verifiable, by the other signer; or a
        # change to the unused low bits of a signature's base64, which Go ignores too (the same signatures).
        assert len(verified) == 1 or _same_signatures(opened, parse_note(note))
