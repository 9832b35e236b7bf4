"""Signed notes, redline against Go: ``redline.crypto.note.open_note`` and Go's ``note.Open`` on the same notes.

A small Go program, ``tests/go/noteopen/main.go``, built in GOPATH mode against Debian's
golang-golang-x-mod-dev (as ``tests/test_go_interop.py`` builds its checker, with the same policy: skip on a
developer's machine without Go, fail in CI), opens every case below with ``note.Open``. For each, redline must
agree: both accept (the same text, the same verified keys in the same order, the same signatures kept
unverified) or both refuse, with the matching error (Go's malformed note is ``MalformedInput``, its
``InvalidSignatureError`` is ``BadSignature``, its ``UnverifiedNoteError`` is ``UnknownKey``, its ambiguous
key is ``KeyMaterialError``).

Two differences are deliberate and checked as such: redline refuses a note over 1 MiB (Go has no bound), and
the same key given twice to redline is one key (Go's ``VerifierList`` calls it ambiguous).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_go_interop import GOCODE, missing_toolchain, require_toolchain

from redline.crypto.keys import SigningKey, VerifierKey
from redline.crypto.note import EM_DASH, MAX_NOTE_BYTES, open_note
from redline.errors import BadSignature, KeyMaterialError, MalformedInput, RedlineError, UnknownKey

GO_SOURCE = Path(__file__).resolve().parent / "go" / "noteopen" / "main.go"

TEXT = "redline.example/log\n42\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
#: Two Ed25519 keys named "collide" with one key ID (a birthday collision of the 32-bit ID, found by trying seeds).
COLLIDING_SEEDS = (74_721, 95_125)


def key(name: str, n: int) -> SigningKey:
    return SigningKey(name, bytes([n]) * 32)


K, J, U = key("k.example", 1), key("j.example", 2), key("u.example", 3)
C1, C2 = (SigningKey("collide", s.to_bytes(32, "big")) for s in COLLIDING_SEEDS)


def line(name: str, raw: bytes | str) -> bytes:
    b64 = raw if isinstance(raw, str) else base64.b64encode(raw).decode()
    return f"{EM_DASH} {name} {b64}\n".encode()


def signed(k: SigningKey, text: str = TEXT) -> bytes:
    return line(k.name, k.key_id + k.sign(text.encode()))


def bad(k: SigningKey) -> bytes:
    return line(k.name, k.key_id + k.sign(b"another text\n"))


def note(*lines: bytes, text: str = TEXT) -> bytes:
    return text.encode() + b"\n" + b"".join(lines)


def unused_bits(raw: bytes, bits: int) -> str:
    """The base64 of ``raw`` with the unused low bits of its last character before the padding set to ``bits``."""
    b64 = base64.b64encode(raw).decode()
    pad = len(b64) - len(b64.rstrip("="))
    last = ALPHABET.index(b64[-pad - 1])
    return b64[: -pad - 1] + ALPHABET[last | (bits & ((1 << (2 * pad)) - 1))] + "=" * pad


def _cases() -> dict[str, tuple[bytes, list[VerifierKey]]]:
    kv, jv = K.verifier(), J.verifier()
    sig_k = K.key_id + K.sign(TEXT.encode())
    cases: dict[str, tuple[bytes, list[VerifierKey]]] = {
        "one-known": (note(signed(K)), [kv]),
        "two-known": (note(signed(K), signed(J)), [jv, kv]),
        "known-and-unknown": (note(signed(U), signed(K), line("nobody", b"\1\2\3\4" + bytes(64))), [kv]),
        "only-unknown": (note(signed(U), signed(J)), [kv]),
        "no-keys": (note(signed(K)), []),
        "repeat-good-good": (note(signed(K), signed(K)), [kv]),
        "repeat-good-bad": (note(signed(K), bad(K)), [kv]),
        "repeat-good-short": (note(signed(K), line(K.name, K.key_id + b"\0")), [kv]),
        "repeat-bad-good": (note(bad(K), signed(K)), [kv]),
        "repeat-unknown": (note(signed(K), signed(U), signed(U), bad(U)), [kv]),
        "bad-known": (note(bad(K)), [kv]),
        "bad-known-after-good": (note(signed(J), bad(K)), [jv, kv]),
        "bad-then-malformed": (note(bad(K), b"not a signature line\n"), [kv]),
        "good-then-malformed": (note(signed(K), b"not a signature line\n"), [kv]),
        "wrong-length-known": (note(line(K.name, sig_k[:-1])), [kv]),
        "too-short": (note(line(K.name, K.key_id)), [kv]),
        "100-signatures": (note(signed(K), *(line(f"u{i}", i.to_bytes(4, "big") + bytes(64)) for i in range(99))),
                           [kv]),
        "101-signatures": (note(signed(K), *(line(f"u{i}", i.to_bytes(4, "big") + bytes(64)) for i in range(100))),
                           [kv]),
        "101-signatures-first-bad": (note(bad(K), *(line(f"u{i}", i.to_bytes(4, "big") + bytes(64))
                                                    for i in range(100))), [kv]),
        "ambiguous": (note(signed(C1)), [C1.verifier(), C2.verifier()]),
        "ambiguous-unnamed": (note(signed(J)), [jv, C1.verifier(), C2.verifier()]),
        "collision-one-known": (note(signed(C2)), [C2.verifier()]),
        "collision-other-known": (note(signed(C2)), [C1.verifier()]),
        # the text
        "blank-lines-in-text": (note(signed(K, "a\n\nb\n"), text="a\n\nb\n"), [kv]),
        "del-in-text": (note(signed(K, "a\x7fb\n"), text="a\x7fb\n"), [kv]),
        "c1-controls-in-text": (note(signed(K, "a\x85\x9fb\n"), text="a\x85\x9fb\n"), [kv]),
        "tab-in-text": (note(signed(K, "a\tb\n"), text="a\tb\n"), [kv]),
        "cr-in-text": (note(signed(K, "a\rb\n"), text="a\rb\n"), [kv]),
        "crlf": (note(signed(K)).replace(b"\n", b"\r\n"), [kv]),
        "signature-block-after-last-blank-line": (note(signed(K)) + b"\n" + signed(J), [jv]),
        "no-blank-line": (TEXT.encode() + signed(K), [kv]),
        "no-final-newline": (note(signed(K))[:-1], [kv]),
        "empty-signature-block": (TEXT.encode() + b"\n", [kv]),
        "only-a-blank-line": (b"\n\n" + signed(K, "\n"), [kv]),
        "invalid-utf8": (b"caf\xe9\n\n" + signed(K, "caf\n"), [kv]),
        "surrogate": (b"\xed\xa0\x80\n\n" + signed(K), [kv]),
        "overlong": (b"\xc0\xaf\n\n" + signed(K), [kv]),
        "replacement-char": (note(signed(K, "\ufffd\n"), text="\ufffd\n"), [kv]),
        # the signature lines
        "en-dash": (note(signed(K).replace(EM_DASH.encode(), "\u2013".encode())), [kv]),
        "no-space-after-dash": (note(signed(K).replace(f"{EM_DASH} ".encode(), EM_DASH.encode())), [kv]),
        "two-spaces": (note(signed(K).replace(b" k.example ", b" k.example  ")), [kv]),
        "trailing-space": (note(signed(K)[:-1] + b" \n"), [kv]),
        "no-signature": (note(f"{EM_DASH} k.example\n".encode()), [kv]),
        "empty-name": (note(line("", sig_k)), [kv]),
        "plus-in-name": (note(line("a+b", bytes(68))), [kv]),
        "base64-no-padding": (note(line(K.name, base64.b64encode(sig_k).decode().rstrip("="))), [kv]),
        "base64-url-safe": (note(line("u", base64.urlsafe_b64encode(b"\xfb\xff" + bytes(66)).decode())), [kv]),
        "base64-extra-padding": (note(signed(K)[:-1] + b"=\n"), [kv]),
        "base64-data-after-padding": (note(line("u", "AAAAAA=A")), [kv]),
        "base64-empty": (note(f"{EM_DASH} u \n".encode()), [kv]),
        "base64-non-ascii": (note(line("u", "AAAAAA\u00c0A")), [kv]),
    }
    for bits in (1, 2, 3):  # 68 bytes: "=" padding, two unused bits
        cases[f"unused-bits-known-{bits}"] = (note(line(K.name, unused_bits(sig_k, bits))), [kv])
    cases["unused-bits-then-canonical"] = (note(line(K.name, unused_bits(sig_k, 1)), signed(K)), [kv])
    cases["unused-bits-unknown-2-pad"] = (note(line("u", unused_bits(b"\1\2\3\4" + bytes(63), 15)), signed(K)),
                                          [kv])
    for ch in ("\u00a0", "\u0085", "\u1680", "\u2003", "\u2028", "\u202f", "\u3000", "\u180e", "\u200b",
               "\ufeff", "\u00ad", "\x7f"):
        cases[f"name-with-U+{ord(ch):04X}"] = (note(signed(K), line(f"a{ch}b", bytes(68))), [kv])
    # the deliberate differences (DIFFERENCES)
    cases["same-key-twice"] = (note(signed(K)), [kv, kv])
    big = "a" * MAX_NOTE_BYTES + "\n"
    cases["over-1-MiB"] = (note(signed(K, big), text=big), [kv])
    return cases


CASES = _cases()
#: Where redline answers otherwise than Go, on purpose: Go's answer, and redline's.
DIFFERENCES = {"same-key-twice": ("ambiguous", "accepted: the same key given twice is one key"),
               "over-1-MiB": ("accepted", "malformed: redline bounds a note at 1 MiB")}


@pytest.fixture(scope="module")
def go_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Go's note.Open on every case, by name."""
    require_toolchain(missing_toolchain())
    base = tmp_path_factory.mktemp("go-noteopen")
    pkg_dir = base / "gopath" / "src" / "noteopen"
    pkg_dir.mkdir(parents=True)
    shutil.copyfile(GO_SOURCE, pkg_dir / "main.go")
    binary = base / "noteopen"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(base), "GO111MODULE": "off",
           "GOPATH": f"{base / 'gopath'}:{GOCODE}", "GOCACHE": str(base / "gocache"), "GOFLAGS": "",
           "GOPROXY": "off", "GOENV": "off", "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}
    res = subprocess.run(["go", "build", "-o", str(binary), "noteopen"], cwd=base / "gopath", env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"go build failed:\n{res.stdout}\n{res.stderr}"
    cases = [{"name": name, "note": base64.b64encode(data).decode(), "keys": [k.to_string() for k in keys]}
             for name, (data, keys) in CASES.items()]
    (base / "cases.json").write_text(json.dumps(cases))
    run = subprocess.run([str(binary), str(base / "cases.json")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = [json.loads(ln) for ln in run.stdout.split("\n") if ln]  # not splitlines: U+0085 is no line end here
    assert [o["name"] for o in out] == list(CASES)
    return {o["name"]: o for o in out}


def _redline(data: bytes, keys: list[VerifierKey]) -> dict:
    """redline's open_note, described as the Go program describes note.Open's answer."""
    try:
        opened, verified = open_note(data, keys)
    except RedlineError as exc:
        kind = ("ambiguous" if isinstance(exc, KeyMaterialError) else "unverified" if isinstance(exc, UnknownKey)
                else "invalid-signature" if isinstance(exc, BadSignature) else
                "malformed" if isinstance(exc, MalformedInput) else "other")
        return {"ok": False, "kind": kind, "error": str(exc)}
    known = {(k.name, k.key_id) for k in keys}
    unverified: list[str] = []
    seen: set[str] = set()
    for s in opened.signatures:  # Go keeps unknown keys' signatures, each distinct line once
        if (s.name, s.key_id) not in known and s.line() not in seen:
            seen.add(s.line())
            unverified.append(f"{s.name}+{s.key_id.hex()}")
    return {"ok": True, "text": opened.text, "verified": [f"{k.name}+{k.key_id.hex()}" for k in verified],
            "unverified": unverified}


@pytest.mark.parametrize("name", [n for n in CASES if n not in DIFFERENCES])
def test_redline_opens_notes_as_go_does(name: str, go_results: dict[str, dict]) -> None:
    data, keys = CASES[name]
    go, ours = go_results[name], _redline(data, keys)
    assert ours["ok"] == go["ok"], f"Go: {go}\nredline: {ours}"
    if go["ok"]:
        assert (ours["text"], ours["verified"], ours["unverified"]) == (go["text"], go["verified"], go["unverified"])
    else:
        assert ours["kind"] == go["kind"], f"Go: {go['error']!r}, redline: {ours['error']!r}"


def test_the_cases_cover_both_answers(go_results: dict[str, dict]) -> None:
    kinds = {r["kind"] for r in go_results.values() if not r["ok"]}
    assert kinds == {"malformed", "invalid-signature", "unverified", "ambiguous"}
    assert sum(r["ok"] for r in go_results.values()) >= 20
    assert go_results["unused-bits-known-3"]["ok"] and go_results["repeat-good-bad"]["ok"]
    assert go_results["repeat-bad-good"]["kind"] == "invalid-signature"


def test_the_deliberate_differences(go_results: dict[str, dict]) -> None:
    """A key given twice is one key to redline (Go: ambiguous); a note over 1 MiB is refused by redline only."""
    for name, (go_answer, ours) in DIFFERENCES.items():
        go = go_results[name]
        assert (go["kind"] if not go["ok"] else "accepted") == go_answer
        got = _redline(*CASES[name])
        assert (got["kind"] if not got["ok"] else "accepted") == ours.split(":")[0]
    assert _redline(*CASES["same-key-twice"])["verified"] == [f"{K.name}+{K.key_id.hex()}"]


def test_the_colliding_keys_collide() -> None:
    assert C1.key_id == C2.key_id and C1.name == C2.name and C1.verifier() != C2.verifier()
