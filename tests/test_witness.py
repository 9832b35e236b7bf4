"""Witnesses: cosignature/v1 known answers, k-of-n policies, the tlog-witness protocol on loopback.

The protocol tests run real witnesses (``redline.witness.server`` under uvicorn on
127.0.0.1, free ports, bounded waits) in front of real redline logs on SQLite, and
ask them for cosignatures with the client in ``redline.log.witness``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from redline.crypto.encoding import b64encode
from redline.crypto.keys import ALG_COSIGNATURE_V1, SigningKey, VerifierKey, load_signing_key
from redline.crypto.note import NoteSignature, add_signatures, parse_note, sign_note
from redline.errors import (
    BadSignature,
    InputTooLarge,
    KeyExists,
    LogClockAhead,
    MalformedInput,
    MalformedKey,
    PolicyNotMet,
    WitnessRefused,
)
from redline.log import merkle
from redline.log.checkpoint import Checkpoint
from redline.log.service import Log
from redline.log.sqlite import SqliteStore
from redline.log.witness import (
    MAX_PROOF_LINES,
    WitnessEndpoint,
    WitnessPolicy,
    add_checkpoint_request,
    check_cosigned,
    check_times,
    collect_cosignatures,
    cosign,
    cosignature_message,
    make_publisher,
    new_witness_key,
    parse_add_checkpoint_request,
    parse_signature_lines,
    verify_cosignature,
    witness_verifier,
)
from redline.witness import Witness, WitnessState

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
from redline.witness.server import create_app  # needs the server extra

ORIGIN = "redline.example/log"
LOG_KEY = SigningKey(ORIGIN, hashlib.sha256(b"test log key").digest())
W1 = SigningKey("witness.example/w1", hashlib.sha256(b"test witness 1").digest())
W2 = SigningKey("witness.example/w2", hashlib.sha256(b"test witness 2").digest())
OTHER = SigningKey("witness.example/other", hashlib.sha256(b"test witness 3").digest())
T0_S = 1_800_000_000
TEXT = f"{ORIGIN}\n5\n{b64encode(bytes(range(32)))}\n"


class Clock:
    """A settable clock: ``ms()`` for logs, ``s()`` for witnesses."""

    def __init__(self, now_s: int = T0_S) -> None:
        self.now_ms = now_s * 1000

    def ms(self) -> int:
        return self.now_ms

    def s(self) -> int:
        return self.now_ms // 1000


def new_log(path: Path, clock: Clock, key: SigningKey = LOG_KEY) -> Log:
    return Log.create(SqliteStore(path, create=True), key, clock=clock.ms)


def grow(log: Log, n: int, tag: str = "e") -> bytes:
    """Append ``n`` entries in one batch; return the new checkpoint."""
    return log.append([f"{tag}-{log.size + i}".encode() for i in range(n)]).checkpoint


@contextmanager
def serving(witness: Witness, prefix: str = "") -> Iterator[str]:
    """Run the witness app under uvicorn on a free loopback port; yield its submission prefix URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(witness, prefix=prefix), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "witness server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}{prefix}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def make_witness(tmp_path: Path, key: SigningKey, clock: Clock, logs: tuple[VerifierKey, ...] = ()) -> Witness:
    return Witness(key, logs or (LOG_KEY.verifier(),), WitnessState(tmp_path / key.name.replace("/", "_")),
                   clock=clock.s)


def post(url: str, body: bytes) -> httpx.Response:
    return httpx.post(url + "/add-checkpoint", content=body, timeout=10)


POLICY_2_OF_2 = WitnessPolicy((witness_verifier(W1), witness_verifier(W2)), 2)


# --- cosignature/v1 known answers ------------------------------------------------


def test_cosignature_known_answer() -> None:
    """The line is built independently here: key ID, big-endian time, Ed25519 over the spec's message."""
    t = 1_679_315_147
    msg = f"cosignature/v1\ntime {t}\n{TEXT}".encode()
    assert cosignature_message(TEXT, t) == msg
    kid = hashlib.sha256(W1.name.encode() + b"\n\x04" + W1.public).digest()[:4]
    sig = Ed25519PrivateKey.from_private_bytes(W1.seed).sign(msg)
    want = f"\u2014 {W1.name} {base64.b64encode(kid + t.to_bytes(8, 'big') + sig).decode()}\n"
    got = cosign(TEXT, W1, t)
    assert got.line() == want
    assert got.key_id == kid == witness_verifier(W1).key_id
    assert verify_cosignature(TEXT, got, witness_verifier(W1)) == t
    assert verify_cosignature(TEXT, want, witness_verifier(W1)) == t


def test_spec_example_layout() -> None:
    """tlog-cosignature's example line: key ID, then the uint64 big-endian time 1679315147, then 64 bytes."""
    line = ("\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZ"
            "qhf5nNo0xUe+mbIUBkBIfZ+qnA==\n")
    text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    (sig,) = parse_signature_lines(text, line)
    assert len(sig.signature) == 72 and int.from_bytes(sig.signature[:8], "big") == 1_679_315_147
    with pytest.raises(BadSignature):  # not our key: name and key ID differ
        verify_cosignature(text, sig, witness_verifier(W1))


def test_tampered_cosignatures_fail() -> None:
    vk = witness_verifier(W1)
    good = cosign(TEXT, W1, T0_S)
    retimed = NoteSignature(good.name, good.key_id, (T0_S + 1).to_bytes(8, "big") + good.signature[8:])
    flipped = NoteSignature(good.name, good.key_id, good.signature[:-1] + bytes([good.signature[-1] ^ 1]))
    for bad in (retimed, flipped):
        with pytest.raises(BadSignature):
            verify_cosignature(TEXT, bad, vk)
    with pytest.raises(BadSignature):  # another text (here: one more extension line)
        verify_cosignature(TEXT + "redline-checkpoint 1\n", good, vk)
    with pytest.raises(BadSignature):  # truncated
        verify_cosignature(TEXT, NoteSignature(good.name, good.key_id, good.signature[:71]), vk)
    with pytest.raises(BadSignature):  # another witness's key
        verify_cosignature(TEXT, good, witness_verifier(W2))
    with pytest.raises(BadSignature):  # a note signature (0x01) is not a cosignature
        verify_cosignature(TEXT, NoteSignature(W1.name, vk.key_id, b"\0" * 8 + W1.sign(TEXT.encode())), vk)
    with pytest.raises(MalformedKey):  # a 0x01 key cannot check cosignatures
        verify_cosignature(TEXT, good, W1.verifier())
    with pytest.raises(MalformedInput):
        cosign(TEXT, W1, -1)
    with pytest.raises(MalformedInput):
        cosign(TEXT, W1, 1 << 63)
    with pytest.raises(MalformedInput):
        cosign("no final newline", W1, T0_S)


def test_witness_vkey_round_trips_and_key_file(tmp_path: Path) -> None:
    vk = witness_verifier(W1)
    assert vk.alg == ALG_COSIGNATURE_V1
    s = vk.to_string()
    name, hexid, b64 = s.split("+", 2)
    assert (name, hexid) == (W1.name, hashlib.sha256(W1.name.encode() + b"\n\x04" + W1.public).digest()[:4].hex())
    assert base64.b64decode(b64) == b"\x04" + W1.public
    assert VerifierKey.from_string(s) == vk and VerifierKey.from_string(s).to_string() == s
    key, pub = new_witness_key("witness.example/new", tmp_path / "w.key")
    assert stat.S_IMODE((tmp_path / "w.key").stat().st_mode) == 0o600
    assert load_signing_key(tmp_path / "w.key") == key
    assert VerifierKey.from_string((tmp_path / "w.key.pub").read_text()) == pub == witness_verifier(key)
    with pytest.raises(KeyExists):
        new_witness_key("witness.example/new", tmp_path / "w.key")


# --- policies and request bodies ---------------------------------------------------


def test_policy_text_and_json() -> None:
    v1, v2, v3 = witness_verifier(W1), witness_verifier(W2), witness_verifier(OTHER)
    text = f"# trust\nwitness {v1.to_string()} https://w1.example/wit/\nwitness {v2.to_string()}\n" \
           f"witness {v3.to_string()}  # third\nquorum 2\n"
    p = WitnessPolicy.from_text(text)
    assert p.witnesses == (v1, v2, v3) and p.threshold == 2
    assert p.endpoints() == [WitnessEndpoint("https://w1.example/wit", v1)]
    assert WitnessPolicy.from_text(p.to_text()) == p
    j = WitnessPolicy.from_text(json.dumps({"witnesses": [{"vkey": v1.to_string(), "url": "http://127.0.0.1:1"},
                                                          v2.to_string()], "quorum": 1}))
    assert j.witnesses == (v1, v2) and j.threshold == 1 and j.urls == {v1.name: "http://127.0.0.1:1"}
    assert WitnessPolicy.from_text(f"witness {v1.to_string()}\n").threshold == 1  # all by default
    for bad in (f"witness {v1.to_string()}\nquorum 2\n", f"witness {v1.to_string()}\nquorum 0\n",
                f"witness {v1.to_string()}\nwitness {v1.to_string()}\n", f"witness {W1.verifier().to_string()}\n",
                "quorum 1\n", f"witnesses {v1.to_string()}\n", f"witness {v1.to_string()} ftp://x\n",
                '{"witnesses": [], "quorum": 1}', json.dumps({"witnesses": [v1.to_string()], "quorum": True})):
        with pytest.raises(MalformedInput):
            WitnessPolicy.from_text(bad)


def test_add_checkpoint_request_round_trip_and_strictness() -> None:
    note = sign_note(TEXT, LOG_KEY)
    proof = [bytes([i]) * 32 for i in range(3)]
    body = add_checkpoint_request(4, proof, note)
    assert body.startswith(b"old 4\n" + base64.b64encode(proof[0]) + b"\n")
    assert parse_add_checkpoint_request(body) == (4, proof, note)
    assert parse_add_checkpoint_request(add_checkpoint_request(0, [], note)) == (0, [], note)
    h = base64.b64encode(b"\1" * 32)
    for bad in (b"old 04\n\n" + note, b"old -1\n\n" + note, b"old 1\n" + note, b"new 1\n\n" + note,
                b"old 1\n" + b"\n".join([h] * (MAX_PROOF_LINES + 1)) + b"\n\n" + note,
                b"old 0\n" + h + b"\n\n" + note, b"old 1\n" + base64.b64encode(b"\1" * 31) + b"\n\n" + note,
                b"old 1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=\n\n" + note, b"old 1"):
        with pytest.raises(MalformedInput):
            parse_add_checkpoint_request(bad)
    with pytest.raises(InputTooLarge):
        parse_add_checkpoint_request(b"old 1\n\n" + b"x" * (1 << 17))
    with pytest.raises(MalformedInput):
        add_checkpoint_request(0, proof, note)


# --- the protocol, end to end ----------------------------------------------------------


def test_two_witnesses_cosign_a_growing_log(tmp_path: Path) -> None:
    clock = Clock()
    log = new_log(tmp_path / "log.db", clock)
    w1, w2 = make_witness(tmp_path, W1, clock), make_witness(tmp_path, W2, clock)
    with serving(w1) as u1, serving(w2, prefix="/witness") as u2:
        eps = [WitnessEndpoint(u1, witness_verifier(W1)), WitnessEndpoint(u2, witness_verifier(W2))]
        publish = make_publisher(eps, POLICY_2_OF_2, log)
        old = 0
        for batch in (1, 2, 5, 8, 1, 300):
            clock.now_ms += 1500
            cp = grow(log, batch)
            proof = log.prove_consistency(old) if old else []
            cosigned = publish(old, cp, proof)
            assert cosigned.startswith(cp)
            got, times = check_cosigned(cosigned, LOG_KEY.verifier(), POLICY_2_OF_2, now_s=clock.s())
            assert got.size == log.size and times == {W1.name: clock.s(), W2.name: clock.s()}
            check_times(got, times, log.entry(log.size - 1)[0], threshold=2)
            old = log.size
        assert w1.state.get(ORIGIN).size == w2.state.get(ORIGIN).size == log.size

        # A publisher that does not know where the witnesses are learns it from their 409 answers.
        cp = grow(log, 3)
        sizes: dict[str, int] = {}
        cosigned = collect_cosignatures(eps, sizes, cp, log.prove_consistency, POLICY_2_OF_2, timeout=10)
        assert sizes == {W1.name: log.size, W2.name: log.size}
        check_cosigned(cosigned, LOG_KEY.verifier(), POLICY_2_OF_2, now_s=clock.s())

        # A witness that is fresh (size 0) is brought in with an empty proof after its 409.
        w3 = make_witness(tmp_path, OTHER, clock)
        with serving(w3) as u3:
            three = WitnessPolicy((*POLICY_2_OF_2.witnesses, witness_verifier(OTHER)), 3)
            publish3 = make_publisher([*eps, WitnessEndpoint(u3, witness_verifier(OTHER))], three, log)
            old = log.size
            cp = grow(log, 2)
            _, times = check_cosigned(publish3(old, cp, log.prove_consistency(old)), LOG_KEY.verifier(), three,
                                      now_s=clock.s())
            assert set(times) == {W1.name, W2.name, OTHER.name}


def test_extension_lines_are_cosigned(tmp_path: Path) -> None:
    clock = Clock()
    w1 = make_witness(tmp_path, W1, clock)
    cp = Checkpoint(ORIGIN, 0, merkle.EMPTY_ROOT, ("redline-checkpoint 0",)).sign(LOG_KEY)
    line = w1.add_checkpoint(add_checkpoint_request(0, [], cp))
    text = parse_note(cp).text
    assert text.endswith("redline-checkpoint 0\n")
    (sig,) = parse_signature_lines(text, line)
    assert verify_cosignature(text, sig, witness_verifier(W1)) == T0_S
    with pytest.raises(BadSignature):
        verify_cosignature(Checkpoint(ORIGIN, 0, merkle.EMPTY_ROOT).text(), sig, witness_verifier(W1))


def test_every_error_answer(tmp_path: Path) -> None:
    clock = Clock()
    log = new_log(tmp_path / "log.db", clock)
    w = make_witness(tmp_path, W1, clock)
    cp4 = grow(log, 4)
    with serving(w) as url:
        r = post(url, add_checkpoint_request(0, [], cp4))
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        (sig,) = parse_signature_lines(parse_note(cp4).text, r.content)
        assert verify_cosignature(parse_note(cp4).text, sig, witness_verifier(W1)) == T0_S
        cp9 = grow(log, 5)
        good = add_checkpoint_request(4, log.prove_consistency(4), cp9)

        # 404: a log the witness does not follow.
        stranger = SigningKey("other.example/log", b"\x07" * 32)
        r = post(url, add_checkpoint_request(0, [], Checkpoint(stranger.name, 0, merkle.EMPTY_ROOT).sign(stranger)))
        assert r.status_code == 404
        # 403: the right origin, signed by another key (and only unknown keys).
        impostor = SigningKey(ORIGIN, b"\x08" * 32)
        forged = Checkpoint(ORIGIN, 9, log.root()).sign(impostor)
        assert post(url, add_checkpoint_request(4, log.prove_consistency(4), forged)).status_code == 403
        # 403: a trusted key's signature that does not verify.
        note = parse_note(cp9)
        bad_sig = NoteSignature(note.signatures[0].name, note.signatures[0].key_id, b"\0" * 64)
        tampered = note.text.encode() + b"\n" + bad_sig.line().encode()
        assert post(url, add_checkpoint_request(4, log.prove_consistency(4), tampered)).status_code == 403
        # 400: old size larger than the checkpoint's, and malformed bodies.
        assert post(url, add_checkpoint_request(10, [b"\1" * 32], cp9)).status_code == 400
        for body in (b"", b"garbage", b"old 4\n", good.replace(b"old 4", b"old 04"), b"old 4\n\nnot a note\n"):
            assert post(url, body).status_code == 400
        # 409: a stale old size; the body is the witness's size, typed text/x.tlog.size.
        r = post(url, add_checkpoint_request(0, [], cp9))
        assert (r.status_code, r.content, r.headers["content-type"]) == (409, b"4\n", "text/x.tlog.size")
        # 422: a proof that does not verify (one bit flipped), or one too short.
        proof = log.prove_consistency(4)
        flipped = [proof[0][:-1] + bytes([proof[0][-1] ^ 1]), *proof[1:]]
        assert post(url, add_checkpoint_request(4, flipped, cp9)).status_code == 422
        assert post(url, add_checkpoint_request(4, proof[:-1], cp9)).status_code == 422
        # 413: a body over the limit.
        assert post(url, b"old 4\n" + b"A" * (128 * 1024)).status_code == 413
        assert w.state.get(ORIGIN).size == 4  # nothing refused moved the witness
        # 200 again with the good request; the same checkpoint again from its own size is cosigned too.
        assert post(url, good).status_code == 200
        assert post(url, add_checkpoint_request(9, [], cp9)).status_code == 200
        # 409: same size, another root (a split view), body still the witness's size.
        other = Checkpoint(ORIGIN, 9, bytes(32)).sign(LOG_KEY)
        r = post(url, add_checkpoint_request(9, [], other))
        assert (r.status_code, r.content, r.headers["content-type"]) == (409, b"9\n", "text/x.tlog.size")
        assert w.state.get(ORIGIN).root == log.root()
        assert [e[2] for e in w.state.evidence()] == [422, 422, 409]  # signed, inconsistent requests kept


def test_concurrent_requests_from_one_old_size(tmp_path: Path) -> None:
    clock = Clock()
    log = new_log(tmp_path / "log.db", clock)
    cp3 = grow(log, 3)
    cp6 = grow(log, 3)
    cp8 = grow(log, 2)
    w = make_witness(tmp_path, W1, clock)
    w.add_checkpoint(add_checkpoint_request(0, [], cp3))
    bodies = [add_checkpoint_request(3, log.prove_consistency(3, 6), cp6),
              add_checkpoint_request(3, log.prove_consistency(3, 8), cp8)]
    with serving(w) as url:
        for _ in range(3):
            barrier = threading.Barrier(len(bodies))
            results: list[int] = []

            def send(body: bytes, barrier: threading.Barrier, results: list[int]) -> None:
                barrier.wait(timeout=10)
                results.append(post(url, body).status_code)

            threads = [threading.Thread(target=send, args=(b, barrier, results)) for b in bodies]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=20)
            assert sorted(results) == [200, 409]
            size = w.state.get(ORIGIN).size
            assert size in (6, 8)
            # Reset the witness to size 3 for the next round (a test-only rewind of its state).
            with w.state.transaction():
                w.state._db.execute("DELETE FROM logs")
            w.add_checkpoint(add_checkpoint_request(0, [], cp3))

    # The core alone, many threads: exactly one advance from size 3.
    outcomes: list[object] = []
    barrier = threading.Barrier(8)

    def core(body: bytes) -> None:
        barrier.wait(timeout=10)
        try:
            outcomes.append(w.add_checkpoint(body))
        except WitnessRefused as exc:
            outcomes.append(exc.status)

    threads = [threading.Thread(target=core, args=(bodies[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert sum(isinstance(o, bytes) for o in outcomes) == 1 and outcomes.count(409) == 7


def test_forked_log_is_refused(tmp_path: Path) -> None:
    """A log (one key, one origin) that shows two trees after size 5 cannot get both cosigned."""
    clock = Clock()
    a, b = new_log(tmp_path / "a.db", clock), new_log(tmp_path / "b.db", clock)
    for log in (a, b):
        grow(log, 5, "common")
    assert a.checkpoint() == b.checkpoint()
    a7, b7 = grow(a, 2, "branch-a"), grow(b, 2, "branch-b")
    assert a.root() != b.root()
    w1, w2 = make_witness(tmp_path, W1, clock), make_witness(tmp_path, W2, clock)
    with serving(w1) as u1, serving(w2) as u2:
        eps = [WitnessEndpoint(u1, witness_verifier(W1)), WitnessEndpoint(u2, witness_verifier(W2))]
        # Both witnesses saw size 5; w1 then sees branch a, w2 nothing more.
        collect_cosignatures(eps, {}, a.checkpoint(5), a.prove_consistency, POLICY_2_OF_2)
        post(u1, add_checkpoint_request(5, a.prove_consistency(5), a7)).raise_for_status()
        # Branch b at the same size: w1 refuses (409, split view), whichever old size is claimed.
        assert post(u1, add_checkpoint_request(7, [], b7)).status_code == 409
        assert post(u1, add_checkpoint_request(5, b.prove_consistency(5), b7)).status_code == 409
        # Branch b grows; a proof from b's size 7 does not reach w1's root for size 7 (422).
        b9 = grow(b, 2, "branch-b")
        assert post(u1, add_checkpoint_request(7, b.prove_consistency(7), b9)).status_code == 422
        # The log's publish step cannot meet a 2-of-2 policy for branch b; w2 alone cosigns it.
        sizes = {W1.name: 7, W2.name: 5}
        with pytest.raises(PolicyNotMet, match="got 1 cosignature"):
            collect_cosignatures(eps, sizes, b9, b.prove_consistency, POLICY_2_OF_2)
        assert w2.state.get(ORIGIN).root == b.root() and w1.state.get(ORIGIN).root == a.root(7)
        # A client holding branch b with w2's cosignature only refuses it under 2-of-2, accepts it under 1-of-2.
        one = add_signatures(b9, cosign(parse_note(b9).text, W2, clock.s()))
        with pytest.raises(PolicyNotMet):
            check_cosigned(one, LOG_KEY.verifier(), POLICY_2_OF_2, now_s=clock.s())
        check_cosigned(one, LOG_KEY.verifier(), WitnessPolicy(POLICY_2_OF_2.witnesses, 1), now_s=clock.s())
        assert {e[2] for e in w1.state.evidence()} == {409, 422}


def test_check_cosigned_refusals(tmp_path: Path) -> None:
    cp = Checkpoint(ORIGIN, 5, bytes(range(32)))
    note = cp.sign(LOG_KEY)
    vk = LOG_KEY.verifier()
    with pytest.raises(PolicyNotMet, match="0 valid cosignature"):
        check_cosigned(note, vk, POLICY_2_OF_2, now_s=T0_S)
    c1, c2 = cosign(cp.text(), W1, T0_S), cosign(cp.text(), W2, T0_S)
    stranger = cosign(cp.text(), OTHER, T0_S)
    with pytest.raises(PolicyNotMet):  # a cosignature outside the policy does not count
        check_cosigned(add_signatures(note, c1, stranger), vk, POLICY_2_OF_2, now_s=T0_S)
    got, times = check_cosigned(add_signatures(note, stranger, c2, c1), vk, POLICY_2_OF_2, now_s=T0_S)
    assert got == cp and times == {W1.name: T0_S, W2.name: T0_S}
    bad = NoteSignature(c2.name, c2.key_id, c2.signature[:-1] + b"\0")
    with pytest.raises(BadSignature):
        check_cosigned(add_signatures(note, c1, bad), vk, POLICY_2_OF_2, now_s=T0_S)
    with pytest.raises(MalformedInput):  # two lines from one witness
        check_cosigned(add_signatures(note, c1, c1, c2), vk, POLICY_2_OF_2, now_s=T0_S)
    future = cosign(cp.text(), W2, T0_S + 3600)
    with pytest.raises(PolicyNotMet, match="in the future"):
        check_cosigned(add_signatures(note, c1, future), vk, POLICY_2_OF_2, now_s=T0_S)
    check_cosigned(add_signatures(note, c1, future), vk, POLICY_2_OF_2, now_s=T0_S, max_ahead_s=4000)
    with pytest.raises(BadSignature):  # the log's signature is required
        check_cosigned(add_signatures(Checkpoint(ORIGIN, 5, bytes(range(32))).sign(SigningKey(ORIGIN, b"\x09" * 32)),
                                      c1, c2), vk, POLICY_2_OF_2, now_s=T0_S)


def test_integration_times_ahead_of_cosignatures_are_refused(tmp_path: Path) -> None:
    wclock, lclock = Clock(), Clock()
    log = new_log(tmp_path / "log.db", lclock)
    w1, w2 = make_witness(tmp_path, W1, wclock), make_witness(tmp_path, W2, wclock)
    eps = [WitnessEndpoint("http://w1.invalid", witness_verifier(W1)),
           WitnessEndpoint("http://w2.invalid", witness_verifier(W2))]

    def cosigned(cp: bytes, old: int) -> tuple[Checkpoint, dict[str, int]]:
        by_host = {"w1.invalid": w1, "w2.invalid": w2}

        def handler(request: httpx.Request) -> httpx.Response:  # the witness core behind a mock transport
            try:
                return httpx.Response(200, content=by_host[request.url.host].add_checkpoint(request.content))
            except WitnessRefused as exc:
                return httpx.Response(exc.status, content=f"{exc.size}\n".encode(),
                                      headers={"content-type": "text/x.tlog.size"})

        with httpx.Client(transport=httpx.MockTransport(handler)) as client:
            note = collect_cosignatures(eps, {W1.name: old, W2.name: old}, cp, log.prove_consistency,
                                        POLICY_2_OF_2, client=client)
        return check_cosigned(note, LOG_KEY.verifier(), POLICY_2_OF_2, now_s=wclock.s())

    # Honest clocks: the witnesses see the checkpoint a little after its entries were integrated.
    lclock.now_ms += 250
    cp, times = cosigned(grow(log, 3), 0)
    check_times(cp, times, log.entry(2)[0])
    # The log stamps entries 5 minutes into the future: the witnesses' times refuse it.
    lclock.now_ms += 300_000
    cp, times = cosigned(grow(log, 2), 3)
    with pytest.raises(LogClockAhead) as err:
        check_times(cp, times, log.entry(4)[0])
    assert err.value.exit_code == 10
    check_times(cp, times, log.entry(4)[0], skew_ms=400_000)  # a generous skew lets it through
    # Within the skew (a second-granular cosignature time, 999 ms + skew later) passes; one ms beyond fails.
    check_times(cp, {"w": 100}, 100_999 + 10_000)
    with pytest.raises(LogClockAhead):
        check_times(cp, {"w": 100}, 101_000 + 10_000)
    # k of n: one witness lagging behind does not block a 1-of-2 check, but does an all-witness check.
    check_times(cp, {"a": 100, "b": 50}, 100_500, threshold=1)
    with pytest.raises(LogClockAhead):
        check_times(cp, {"a": 100, "b": 50}, 100_500)
    with pytest.raises(PolicyNotMet):
        check_times(cp, {}, 100_500)
    check_times(Checkpoint(ORIGIN, 0, merkle.EMPTY_ROOT), {}, None)  # an empty tree bounds nothing


def test_witness_state_survives_restart(tmp_path: Path) -> None:
    clock = Clock()
    log = new_log(tmp_path / "log.db", clock)
    cp = grow(log, 6)
    w = make_witness(tmp_path, W1, clock)
    with serving(w) as url:
        assert post(url, add_checkpoint_request(0, [], cp)).status_code == 200
    w.state.close()
    again = make_witness(tmp_path, W1, clock)
    rec = again.state.get(ORIGIN)
    assert (rec.size, rec.root, rec.checkpoint) == (6, log.root(), cp)
    cp9 = grow(log, 3)
    with serving(again) as url:
        r = post(url, add_checkpoint_request(0, [], cp9))
        assert (r.status_code, r.content) == (409, b"6\n")
        assert post(url, add_checkpoint_request(6, log.prove_consistency(6), cp9)).status_code == 200
    assert again.state.get(ORIGIN).size == 9


def test_collect_cosignatures_reports_unreachable_witnesses(tmp_path: Path) -> None:
    clock = Clock()
    log = new_log(tmp_path / "log.db", clock)
    w1 = make_witness(tmp_path, W1, clock)
    with serving(w1) as u1:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening: refused at once
        eps = [WitnessEndpoint(u1, witness_verifier(W1)), WitnessEndpoint(dead, witness_verifier(W2))]
        cp = grow(log, 2)
        with pytest.raises(PolicyNotMet, match="witness.example/w2"):
            collect_cosignatures(eps, {}, cp, log.prove_consistency, POLICY_2_OF_2, timeout=5)
        sock.close()
        one = WitnessPolicy(POLICY_2_OF_2.witnesses, 1)
        note = collect_cosignatures(eps, {}, grow(log, 1), log.prove_consistency, one, timeout=5)
        assert set(check_cosigned(note, LOG_KEY.verifier(), one, now_s=clock.s())[1]) == {W1.name}


# --- the command line ----------------------------------------------------------------


def test_cli_key_new_and_show(tmp_path: Path) -> None:
    from redline.cli.main import cli

    runner = CliRunner()
    r = runner.invoke(cli, ["witness", "key", "new", "witness.example/cli", "-o", str(tmp_path / "w.key")])
    assert r.exit_code == 0, r.output
    vk = VerifierKey.from_string(r.stdout.strip())
    assert vk.alg == ALG_COSIGNATURE_V1 and stat.S_IMODE((tmp_path / "w.key").stat().st_mode) == 0o600
    r = runner.invoke(cli, ["witness", "key", "new", "witness.example/cli", "-o", str(tmp_path / "w.key")])
    assert r.exit_code == 73
    clock = Clock()
    log = new_log(tmp_path / "log.db", clock)
    w = Witness(load_signing_key(tmp_path / "w.key"), [LOG_KEY.verifier()], WitnessState(tmp_path / "state"),
                clock=clock.s)
    w.add_checkpoint(add_checkpoint_request(0, [], grow(log, 2)))
    w.state.close()
    r = runner.invoke(cli, ["witness", "show", "--state", str(tmp_path / "state"), "--key", str(tmp_path / "w.key")])
    assert r.exit_code == 0, r.output
    assert f"{ORIGIN}  size 2  root {b64encode(log.root())}" in r.stdout and vk.to_string() in r.stdout
    r = runner.invoke(cli, ["witness", "show", "--state", str(tmp_path / "state"), "--json"])
    assert r.exit_code == 0 and '"size": 2' in r.stdout
    for args in (["witness", "--help"], ["witness", "serve", "--help"], ["witness", "key", "new", "--help"]):
        assert runner.invoke(cli, args).exit_code == 0


def test_cli_serve_answers_on_loopback(tmp_path: Path) -> None:
    """``redline witness serve`` as a process: it cosigns, and its state is what ``witness show`` reads."""
    import subprocess
    import sys

    from redline.crypto.keys import save_signing_key

    save_signing_key(W1, tmp_path / "w.key")
    (tmp_path / "log.pub").write_text(LOG_KEY.verifier().to_string() + "\n")
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    proc = subprocess.Popen([sys.executable, "-m", "redline.cli.main", "witness", "serve", "--state",
                             str(tmp_path / "state"), "--key", str(tmp_path / "w.key"), "--log",
                             str(tmp_path / "log.pub"), "--port", str(port), "--prefix", "/w"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}/w"
        cp = Checkpoint(ORIGIN, 0, merkle.EMPTY_ROOT).sign(LOG_KEY)
        deadline = time.monotonic() + 20
        while True:
            try:
                r = post(url, add_checkpoint_request(0, [], cp))
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "redline witness serve did not start"
                time.sleep(0.1)
        assert r.status_code == 200
        (sig,) = parse_signature_lines(parse_note(cp).text, r.content)
        verify_cosignature(parse_note(cp).text, sig, witness_verifier(W1))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    from redline.cli.main import cli

    r = CliRunner().invoke(cli, ["witness", "show", "--state", str(tmp_path / "state")])
    assert f"{ORIGIN}  size 0" in r.stdout
