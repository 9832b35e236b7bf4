"""The fast paths of the parallel replay change no outcome.

- the helper processes (``redline.engine.parallel``): what they send back is what ``prepare`` finds, and a
  helper that dies, answers out of form or is fed garbage only costs speed;
- ``verified_keyids`` finds exactly the key IDs whose first signature ``Envelope.verify`` would accept;
- the canonical base64 check of the envelope shortcut (the last quantum only) is the re-encoding check;
- ``canonical_json_owned`` (the predicate's canonical form, on a dump made for it) is ``canonical_json``.

Bad input throughout: altered payloads, garbage, replayed entries, deep nesting. Speed is measured in
``bench/replay.py``, never here.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from redline.crypto import canonical
from redline.crypto.canonical import canonical_json, canonical_json_owned
from redline.crypto.dsse import Envelope, EnvelopeSignature, _b64, sign_envelope, verified_keyids
from redline.crypto.keys import SigningKey
from redline.engine import Entry, parallel, replay
from redline.engine.parallel import candidate_keys, prepare, replay_parallel
from redline.errors import BadSignature, MalformedInput, UnknownKey
from redline.statements import Admission, Genesis, Indicator, RunProgress, TranscriptCommitments, base, sign_predicate

T0_MS = 1_800_000_000_000
ORIGIN = "fastpath.redline.example/log"
H64 = "cd" * 32


def _key(name: str, generation: int = 0) -> SigningKey:
    return SigningKey(name, hashlib.sha256(f"test-fastpath/{name}/{generation}".encode()).digest())


def _now(i: int) -> datetime:
    return datetime.fromtimestamp((T0_MS + 60_000 * i) / 1000, tz=UTC)


def _log(n: int = 60) -> list[Entry]:
    """A genesis, two labs, and their indicators and progress, with forgeries, garbage and replays mixed in."""
    coord, labs = _key("coordinator"), {name: _key(name) for name in ("lab-a", "lab-b")}
    seq: dict[str, int] = {}
    datas: list[bytes] = []

    def sign(party: str, key: SigningKey, cls: Any, **fields: Any) -> bytes:
        seq[party] = seq.get(party, 0) + 1
        data = sign_predicate(cls(party=party, seq=seq[party], log=ORIGIN, **fields), key).to_json()
        datas.append(data)
        return data

    sign("coordinator", coord, Genesis, origin=ORIGIN, coordinator="coordinator",
         coordinator_key=coord.verifier().to_string())
    for name, key in labs.items():
        sign("coordinator", coord, Admission, admitted=name, verifier_key=key.verifier().to_string(), role="lab",
             display_name=name, jurisdiction="EU")
    i = 0
    while len(datas) < n:
        i += 1
        lab = "lab-a" if i % 2 else "lab-b"
        now = _now(len(datas))
        if i % 3:
            good = sign(lab, labs[lab], Indicator, name="ai-code-share", subject=lab, value=0.25, unit="fraction",
                        window_start=now, window_end=now, method="m", method_version="1",
                        evidence_digest={"sha256": H64})
        else:
            good = sign(lab, labs[lab], RunProgress, run_id="r1", step=10 * i, flop_so_far=1e20 * i,
                        commitments=TranscriptCommitments(steps_root=H64, data_root=H64, checkpoints_root=H64,
                                                          step_count=10 * i), spec_digest=None, as_of=now)
        env = Envelope.from_json(good)
        if i % 7 == 0:  # the payload altered after signing
            datas.append(Envelope(env.payload.replace(b'"seq":', b'"seq":1', 1), env.payload_type,
                                  env.signatures).to_json())
        if i % 11 == 0:  # replayed
            datas.append(good)
        if i % 13 == 0:  # garbage, and nesting deep enough to fail a parser
            datas.extend([b"not json", b"[" * 3000 + b"]" * 3000, b'{"payload":' + b"[" * 500 + b"]" * 500 + b"}"])
        if i % 17 == 0:  # a good signature by an unknown key ahead of a bad one by the lab's key
            datas.append(Envelope(env.payload, env.payload_type,
                                  (EnvelopeSignature("00" * 32, bytes(64)),
                                   EnvelopeSignature(env.signatures[0].keyid, bytes(64)))).to_json())
    return [Entry(j, T0_MS + 60_000 * j, d) for j, d in enumerate(datas)]


@pytest.fixture(scope="module")
def log() -> list[Entry]:
    return _log()


@pytest.fixture
def always_parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "MIN_PARALLEL_ENTRIES", 0)
    monkeypatch.setattr(parallel, "HEAD_ENTRIES", 4)
    monkeypatch.setattr(parallel, "ADMIT_WHILE_STARTING", False)


# --- the helpers ------------------------------------------------------------------------


def test_parallel_replay_of_a_log_with_bad_entries(log: list[Entry], always_parallel: None) -> None:
    want = replay(log)
    assert {r.error for r in want.rejected} >= {"BadSignature", "SequenceError", "MalformedInput"}
    assert replay_parallel(log, workers=2, chunk=5).to_dict() == want.to_dict()
    assert replay_parallel(log, workers=3, chunk=1).digest() == want.digest()


def test_what_a_helper_sends_is_what_prepare_finds(log: list[Entry]) -> None:
    keys = candidate_keys(e.data for e in log)
    request = io.BytesIO()
    half = len(log) // 2
    strings = [k.to_string() for k in keys.values()] + ["not a key"]
    parallel._write_frame(request, (strings, [e.data for e in log[:half]]))
    parallel._write_frame(request, ([], [e.data for e in log[half:]]))
    reply = io.BytesIO()
    parallel._serve(io.BytesIO(request.getvalue()), reply)
    reply.seek(0)
    assert parallel._read_frame(reply) == parallel.READY  # a helper says it has started, then answers
    items = parallel._read_frame(reply) + parallel._read_frame(reply)
    with pytest.raises(EOFError):
        parallel._read_frame(reply)
    assert len(items) == len(log)
    for e, item in zip(log, items):
        full, got = prepare(e.data, keys), parallel._prepared(item)
        if full is None:
            assert got is None
            continue
        assert got is not None
        assert (got.keyids, got.verified, got.predicate) == (full.keyids, full.verified, full.predicate)
        if got.payload is not None:  # verified, not parsed by the helper: admit parses it
            assert full.predicate is None and full.verified and got.payload == full.envelope.payload  # type: ignore[union-attr]


def test_a_helper_reads_plain_data_only() -> None:
    class Evil:
        def __reduce__(self) -> Any:
            return (print, ("never",))

    body = pickle.dumps(([], [Evil()]), protocol=5)
    stream = io.BytesIO(len(body).to_bytes(8, "little") + body)
    with pytest.raises(pickle.UnpicklingError, match="plain data"):
        parallel._read_frame(stream)
    reply = io.BytesIO()
    parallel._serve(io.BytesIO(len(body).to_bytes(8, "little") + body), reply)  # ends, answering nothing
    reply.seek(0)
    assert parallel._read_frame(reply) == parallel.READY
    with pytest.raises(EOFError):
        parallel._read_frame(reply)
    with pytest.raises(EOFError):
        parallel._read_frame(io.BytesIO(b"\x10\x00\x00\x00\x00\x00\x00\x00abc"))  # cut inside a frame


def test_a_helper_that_dies_costs_only_speed(log: list[Entry], always_parallel: None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    submit = parallel._Helpers.submit
    calls = []

    def dying(self: parallel._Helpers, datas: list[bytes], keys: Any) -> int | None:
        calls.append(1)
        if len(calls) == 3:
            self.procs[0].kill()
            self.procs[0].wait()
        return submit(self, datas, keys)

    monkeypatch.setattr(parallel._Helpers, "submit", dying)
    assert replay_parallel(log, workers=2, chunk=4).to_dict() == replay(log).to_dict()


def test_a_reply_out_of_form_costs_only_speed(log: list[Entry], always_parallel: None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    load = parallel._load_plain
    calls = []

    def garbled(body: Any) -> Any:
        calls.append(1)
        got = load(body)
        return got[:-1] if len(calls) == 2 else got

    monkeypatch.setattr(parallel, "_load_plain", garbled)
    assert replay_parallel(log, workers=2, chunk=4).to_dict() == replay(log).to_dict()


@pytest.fixture
def answered(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """For each reply read back: whether it came from a helper (False: broken, ``admit`` did the work)."""
    got: list[bool] = []
    result = parallel._Helpers.result

    def counted(self: parallel._Helpers, i: int | None, count: int) -> Any:
        items = result(self, i, count)
        got.append(items is not None)
        return items

    monkeypatch.setattr(parallel._Helpers, "result", counted)
    return got


def test_pipes_smaller_than_a_request_do_not_deadlock(log: list[Entry], always_parallel: None,
                                                      monkeypatch: pytest.MonkeyPatch, answered: list[bool]) -> None:
    """With one-page pipes every request and reply is many times what a pipe holds: the helpers still answer
    (this process never blocks on writing a request while a helper waits for it to read a reply)."""
    monkeypatch.setattr(parallel, "PIPE_BYTES", 4096)
    monkeypatch.setattr(parallel, "READ_BYTES", 1000)
    big = _log(400)  # chunks of 20 entries: about 30 KB a request, 20 requests
    out: list[Any] = []
    worker = threading.Thread(target=lambda: out.append(replay_parallel(big, workers=2, chunk=20)), daemon=True)
    worker.start()
    worker.join(120)
    assert not worker.is_alive(), "the parallel replay deadlocked"
    assert out and out[0].to_dict() == replay(big).to_dict()
    assert answered and all(answered)  # every reply came from a helper


def test_pipes_numbered_beyond_select_s_limit(log: list[Entry], always_parallel: None,
                                              answered: list[bool]) -> None:
    """A process with over 1,024 descriptors open (a busy server) still gets its helpers' work: waiting uses poll,
    which has no limit on descriptor numbers (select refuses any descriptor from 1,024 on)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"this system allows only {hard} open descriptors")
    if soft != resource.RLIM_INFINITY and soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200 if hard == resource.RLIM_INFINITY else min(hard, 1200), hard))
    held = []
    try:
        while True:
            fd = os.open(os.devnull, os.O_RDONLY)
            held.append(fd)
            if fd >= 1100:
                break
        assert replay_parallel(log, workers=2, chunk=5).to_dict() == replay(log).to_dict()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert answered and all(answered)


def test_helpers_that_cannot_start_cost_only_speed(log: list[Entry], always_parallel: None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    assert replay_parallel(log, workers=2, chunk=4).to_dict() == replay(log).to_dict()


def test_a_result_that_does_not_validate_again_is_admitted_from_scratch(log: list[Entry]) -> None:
    keys = candidate_keys(e.data for e in log)
    item = parallel._prepare_chunk([log[5].data], keys)[0]
    assert item is not None and item[4]
    broken = parallel._prepared((item[0], item[1], item[2], b"{}", True))
    assert broken is not None and broken.predicate is None and broken.payload is None and broken.verified


# --- verified_keyids ----------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.booleans()), min_size=1, max_size=5),
       st.sets(st.sampled_from(["a", "b", "c"])))
def test_verified_keyids_is_what_verify_accepts(sigs: list[tuple[str, bool]], known: set[str]) -> None:
    """A key ID is reported iff ``Envelope.verify`` with that key alone returns it (its first signature decides)."""
    signers = {name: _key(name) for name in "abc"}
    fps = {name: signers[name].verifier().fingerprint for name in "abc"}
    payload = b'{"x":1}'
    env = sign_envelope(payload, signers["a"])
    good = {name: sign_envelope(payload, signers[name]).signatures[0].sig for name in "abc"}
    env = Envelope(payload, env.payload_type,
                   tuple(EnvelopeSignature(fps[n], good[n] if ok else bytes(64)) for n, ok in sigs))
    keys = {fps[n]: signers[n].verifier() for n in known}
    want = []
    for n in dict.fromkeys(n for n, _ in sigs):
        if n not in known:
            continue
        try:
            env.verify([signers[n].verifier()])
        except (BadSignature, UnknownKey):
            continue
        want.append(fps[n])
    assert verified_keyids(env, keys) == want


# --- Ed25519 -------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 64 * 8 + 300 * 8), st.sampled_from([0, 63, 64, 65]))
def test_ed25519_verify_is_libsodiums_crypto_sign_open(message: bytes, bit: int, length: int) -> None:
    from nacl.bindings import crypto_sign_open
    from nacl.exceptions import BadSignatureError

    from redline.crypto.keys import ed25519_verify

    key = _key("signer")
    public = key.verifier().public
    signed = bytearray(key.sign(message) + message)
    if bit < len(signed) * 8 and bit % 3:
        signed[bit // 8] ^= 1 << (bit % 8)
    signature, body = bytes(signed[:64])[:length] + bytes(max(0, length - 64)), bytes(signed[64:])
    try:
        want = len(signature) == 64 and crypto_sign_open(signature + body, public) == body
    except (BadSignatureError, ValueError):
        want = False
    assert ed25519_verify(public, body, signature) is want
    assert ed25519_verify(public[:31], body, signature) is False
    assert ed25519_verify(public, "text", signature) is False  # type: ignore[arg-type]


# --- the envelope shortcut's base64 check ---------------------------------------------


def _b64_reference(raw: bytes) -> bytes | None:
    try:
        data = binascii.a2b_base64(raw, strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    return data if binascii.b2a_base64(data, newline=False) == raw else None


_B64_BYTES = b"AQgw+/=-_ \n\x00\xff"


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=13) | st.binary(min_size=40, max_size=400),  # short, and long enough for SIMD blocks
       st.lists(st.tuples(st.integers(0, 540), st.sampled_from(list(_B64_BYTES)),
                                                  st.sampled_from(["replace", "insert", "delete"])), max_size=3))
@example(b"\xb8\x9b\xa3", [(4, ord("="), "insert")])  # padding after a whole quantum: not canonical
@example(b"a", [(2, ord("="), "delete")])  # unpadded
@example(b"ab", [(2, ord("R"), "replace")])  # non-zero padding bits
def test_base64_check_is_the_reencoding_check(data: bytes, edits: list[tuple[int, int, str]]) -> None:
    raw = bytearray(base64.b64encode(data))
    for pos, byte, how in edits:
        pos = min(pos, len(raw))
        if how == "insert":
            raw.insert(pos, byte)
        elif raw and how == "replace":
            raw[min(pos, len(raw) - 1)] = byte
        elif raw:
            del raw[min(pos, len(raw) - 1)]
    assert _b64(bytes(raw)) == _b64_reference(bytes(raw))


# --- the predicate's canonical form -------------------------------------------------------

_leaf = (st.none() | st.booleans() | st.integers(min_value=-(2**60), max_value=2**60)
         | st.floats(allow_nan=True, allow_infinity=True) | st.text())
_values = st.recursive(_leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(), c, max_size=4),
                       max_leaves=25)


@settings(max_examples=1500, deadline=None)
@given(st.dictionaries(st.text(), _values, max_size=6))
@example({"\U0001f600": 1, "\ue000": 2})
@example({"a": [1e-7, 1e-5, 1e16, 2.0**60, 1e21, 1.5e300, -0.0, 0.1, 1.0, 123.456, 2**53, -(2**53) + 1]})
@example({"a": "\ud800"})
def test_canonical_json_owned_is_canonical_json(value: dict[str, Any]) -> None:
    try:
        want: bytes | None = canonical_json(value)
    except MalformedInput:
        want = None
    got = canonical_json_owned(copy.deepcopy(value))
    assert got is None or got == want
    if got is None and want is not None:  # it declines only where canonical_json's own fast path does
        with pytest.raises((canonical._NeedsSlowPath, UnicodeEncodeError, ValueError)):
            canonical._encode_bytes(canonical._prepare(value))



_subject = st.fixed_dictionaries({
    "name": st.text(),
    "digest": st.dictionaries(st.text(alphabet=st.characters(max_codepoint=127), max_size=8), st.text(),
                              min_size=1, max_size=3),
})


@settings(max_examples=1000, deadline=None)
@given(st.lists(_subject, max_size=5))
@example([{"name": "a\x00\x1f\x7f\u2028\U0001f600\"\\", "digest": {"sha256": "00", "blake3": "\ue000"}}])
@example([{"name": "\ud800", "digest": {"sha256": "00"}}])  # a lone surrogate: no encoder writes it
def test_subjects_json_is_canonical_json(subjects: list[dict[str, Any]]) -> None:
    try:
        want: bytes | None = canonical_json(subjects)
    except MalformedInput:
        want = None
    assert base._subjects_json(subjects) == want


@pytest.mark.parametrize("subjects", [
    ({"name": "a", "digest": {"sha256": "00"}},),  # a tuple, not a list
    [{"name": 1, "digest": {"sha256": "00"}}],
    [{"name": "a", "digest": {}}],
    [{"name": "a", "digest": {"sha256": 0}}],
    [{"name": "a", "digest": {"shä": "00"}}],
    [{"name": "a", "digest": {"sha256": "00"}, "extra": 1}],
])
def test_subjects_json_leaves_other_shapes_to_the_slow_path(subjects: Any) -> None:
    assert base._subjects_json(subjects) is None

# --- forked helpers ---------------------------------------------------------------------

_FORK_SCRIPT = r"""
import json, os, sys, threading
sys.path.insert(0, sys.argv[1])
import test_replay_fastpath as t
from redline.engine import parallel, replay
from redline.engine.parallel import replay_parallel

mode = sys.argv[2]
parallel.MIN_PARALLEL_ENTRIES, parallel.HEAD_ENTRIES, parallel.ADMIT_WHILE_STARTING = 0, 4, False
forked, answered = [], []
fork, result = parallel._fork, parallel._Helpers.result
def counting_fork(siblings):
    got = fork(siblings)
    forked.append(got is not None)
    return got
def counting_result(self, i, count):
    got = result(self, i, count)
    answered.append(got is not None)
    return got
parallel._fork = counting_fork
parallel._Helpers.result = counting_result
if mode == "thread":  # another thread runs: no fork
    stop = threading.Event()
    threading.Thread(target=stop.wait, daemon=True).start()
if mode == "nofork":  # the system refuses to fork: fresh interpreters
    def refuse():
        raise OSError("no more processes")
    os.fork = refuse
if mode == "reaped":  # SIGCHLD ignored: the system reaps the helpers itself, waitpid finds nothing to wait for
    import signal
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
if mode == "kill":  # a forked helper dies after some replies came back: the rest is admitted here
    submit, sent = parallel._Helpers.submit, []
    def dying(self, datas, keys):
        sent.append(1)
        if len(sent) == 12:
            self.procs[0].kill()
            self.procs[0].wait()
        return submit(self, datas, keys)
    parallel._Helpers.submit = dying
log = t._log(300)
equal = replay_parallel(log, workers=2, chunk=7).to_dict() == replay(log).to_dict()
try:
    os.waitpid(-1, os.WNOHANG)
    children_left = True
except ChildProcessError:
    children_left = False
print(json.dumps({"equal": equal, "forked": forked, "answered": all(answered) and len(answered) > 5,
                  "some_answered": any(answered), "some_not": not all(answered),
                  "children_left": children_left, "tasks": len(os.listdir("/proc/self/task"))}))
"""


def _fork_run(mode: str) -> dict[str, Any]:
    tests_dir = str(Path(__file__).parent)
    done = subprocess.run([sys.executable, "-c", _FORK_SCRIPT, tests_dir, mode], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc to count threads")
def test_a_single_threaded_process_forks_its_helpers() -> None:
    """pytest-xdist runs a thread beside each test, so this runs in a fresh process of one thread."""
    got = _fork_run("plain")
    assert got == {"equal": True, "forked": [True, True], "answered": True, "some_answered": True, "some_not": False,
                   "children_left": False, "tasks": 1}


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc to count threads")
def test_forked_helpers_reaped_by_the_system_are_waited_for_without_error() -> None:
    got = _fork_run("reaped")
    assert got["equal"] and got["forked"] == [True, True] and got["answered"] and not got["children_left"]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc to count threads")
def test_a_forked_helper_that_dies_costs_only_speed() -> None:
    got = _fork_run("kill")
    assert got["equal"] and got["forked"] == [True, True] and got["some_answered"] and got["some_not"]
    assert not got["children_left"]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc to count threads")
def test_a_process_with_another_thread_starts_fresh_interpreters() -> None:
    got = _fork_run("thread")
    assert got["equal"] and got["forked"] == [] and got["answered"] and not got["children_left"]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc to count threads")
def test_a_failed_fork_falls_back_to_fresh_interpreters() -> None:
    got = _fork_run("nofork")
    assert got["equal"] and got["forked"] == [False, False] and got["answered"] and not got["children_left"]


def test_single_threaded_counts_threads_python_did_not_start_too() -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        assert not parallel._single_threaded()
    finally:
        stop.set()
        other.join()



_ORPHAN_SCRIPT = r"""
import os, signal, sys
from redline.engine import parallel
helpers = parallel._Helpers(2)
assert helpers.ready(wait=True) and not helpers.broken
print(" ".join(str(p.pid) for p in helpers.procs), flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # the caller dies without a word to its helpers
"""


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_helpers_end_when_their_caller_is_killed() -> None:
    """Helpers (forked here: the script runs one thread) read their end of input when the caller dies, and exit:
    none is left behind."""
    import time

    done = subprocess.run([sys.executable, "-c", _ORPHAN_SCRIPT], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == -9, done.stderr
    pids = [int(p) for p in done.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 30
    while any(_running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_running(p) for p in pids)
