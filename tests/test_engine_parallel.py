"""Parallel replay (``redline.engine.parallel``) gives exactly the state sequential replay gives.

The logs here are built by hand (no log service): a scenario with admissions, a policy, a
pause, key rotations and reviews, interleaved with forgeries (a payload altered after
signing, a signature by a key never admitted, one by a rotated-away key, a bad signature
ahead of a good one by the same key) and garbage (bytes that are not an envelope, deeply
nested JSON, entries over the size limit, non-canonical payloads). Speed is measured in
``bench/replay.py``, never here.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from scenario_kit import finish_fields, report_fields, run_spec, run_start_fields, weights

from redline.crypto.canonical import canonical_json
from redline.crypto.dsse import Envelope, EnvelopeSignature, sign_envelope, sign_statement
from redline.crypto.keys import SigningKey
from redline.engine import Entry, State, admit, apply, parallel, replay
from redline.engine.parallel import candidate_keys, prepare, replay_parallel
from redline.engine.replay import MAX_ENTRY_BYTES, Prepared
from redline.errors import RedlineError
from redline.policy import load_pack
from redline.statements import (
    Admission,
    ChipCount,
    Cluster,
    Commitment,
    ComputeInventory,
    CountQuorum,
    Genesis,
    Indicator,
    KeyRotation,
    PauseAcknowledgement,
    PolicyPublication,
    Predicate,
    Release,
    ReviewDecision,
    ReviewSubmission,
    RunFinish,
    RunProgress,
    RunStart,
    TranscriptCommitments,
    VerificationReport,
    sign_predicate,
    to_statement,
)

T0_MS = 1_800_000_000_000
H64 = "ab" * 32
_T = TypeVar("_T")
ORIGIN = "test.redline.example/log"


def _key(name: str, generation: int = 0) -> SigningKey:
    return SigningKey(name, hashlib.sha256(f"test-parallel/{name}/{generation}".encode()).digest())


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class _Log:
    """Entries written by hand: signed statements, forgeries and garbage, one minute apart."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.keys: dict[str, SigningKey] = {}
        self.seq: dict[str, int] = {}

    def add(self, data: bytes) -> None:
        self.entries.append(Entry(len(self.entries), T0_MS + 60_000 * len(self.entries), data))

    def pred(self, party: str, cls: type[Predicate], **fields: Any) -> Predicate:
        self.seq[party] = self.seq.get(party, 0) + 1
        return cls(party=party, seq=self.seq[party], log=ORIGIN, **fields)

    def sub(self, party: str, cls: type[Predicate], **fields: Any) -> bytes:
        data = sign_predicate(self.pred(party, cls, **fields), self.keys[party]).to_json()
        self.add(data)
        return data

    def forge(self, party: str, cls: type[Predicate], key: SigningKey, **fields: Any) -> None:
        """A well-formed statement for ``party`` signed by ``key`` (its sequence number not consumed)."""
        pred = self.pred(party, cls, **fields)
        self.seq[party] -= 1
        self.add(sign_statement(to_statement(pred), key).to_json())


def _envelope(payload: bytes, *sigs: tuple[str, bytes]) -> bytes:
    return Envelope(payload, "application/vnd.in-toto+json",
                    tuple(EnvelopeSignature(k, s) for k, s in sigs)).to_json()


def _nested(depth: int) -> bytes:
    """JSON text of a string inside ``depth`` nested arrays."""
    return b"[" * depth + b'"x"' + b"]" * depth


def _scenario() -> _Log:
    log = _Log()
    coord = log.keys["coordinator"] = _key("coordinator")
    log.sub("coordinator", Genesis, origin=ORIGIN, coordinator="coordinator",
            coordinator_key=coord.verifier().to_string())
    for name, role in [("lab-a", "lab"), ("lab-b", "lab"), ("lab-c", "lab"), ("gov", "regulator"),
                       ("audit", "auditor")]:
        log.keys[name] = _key(name)
        log.sub("coordinator", Admission, admitted=name, verifier_key=log.keys[name].verifier().to_string(),
                role=role, display_name=name.upper(), jurisdiction="EU")
    # An admission signed by a lab (rejected): its key becomes a candidate the engine never trusts.
    stranger = _key("stranger")
    log.forge("lab-c", Admission, log.keys["lab-c"], admitted="stranger", verifier_key=stranger.verifier().to_string(),
              role="lab", display_name="Stranger", jurisdiction="XX")
    pol = load_pack("coordinated-pause")
    now = _utc(T0_MS)
    log.sub("coordinator", PolicyPublication, policy_id=pol.id, version=str(pol.version), document=pol.document(),
            document_digest=pol.digest, effective_from=now, supersedes=[])
    for lab in ("lab-a", "lab-b", "lab-c"):
        log.sub(lab, ComputeInventory, as_of=now,
                clusters=[Cluster(cluster_id="c1", site="Somewhere", chips=[ChipCount(chip_model="H100 SXM",
                                                                                       count=1000)])])
        log.sub(lab, Commitment, policy_digest=pol.digest, pauses=["training", "releases"],
                quorum=CountQuorum(kind="count", threshold=3), expires_at=now + timedelta(days=365))
    pause_index = len(log.entries)
    log.sub("lab-a", RunStart, run_id="r1", model_name="A-1", declared_flop=3e25, flop_method="6ND", hardware=[],
            started_at=now)
    log.sub("lab-b", RunStart, run_id="r2", model_name="B-1", declared_flop=3.5e20, flop_method="6ND", hardware=[],
            started_at=now)
    for lab in ("lab-a", "lab-b"):
        log.sub(lab, PauseAcknowledgement, pause_id=str(pause_index))
    for i in range(6):
        log.sub("lab-b", RunProgress, run_id="r2", step=100 * (i + 1), flop_so_far=1e19 * (i + 1),
                commitments=TranscriptCommitments(steps_root=H64, data_root=H64, checkpoints_root=H64,
                                                  step_count=100 * (i + 1)), spec_digest=None, as_of=now)
        log.sub("audit" if i % 2 else "gov", Indicator, name="time-horizon-50", subject="B-1", value=1.5 + i,
                unit="hours", window_start=now, window_end=now, method="metr", method_version="1",
                evidence_digest={"sha256": H64})

    # Forgeries.
    good = log.sub("lab-c", Indicator, name="ai-code-share", subject="lab-c", value=0.2, unit="fraction",
                   window_start=now, window_end=now, method="m", method_version="1", evidence_digest={"sha256": H64})
    env = Envelope.from_json(good)
    altered = env.payload.replace(b'"value":0.2', b'"value":0.1')
    assert altered != env.payload
    log.add(Envelope(altered, env.payload_type, env.signatures).to_json())  # payload altered after signing
    log.forge("lab-c", Indicator, _key("lab-c", 99), name="ai-code-share", subject="lab-c", value=0.3,
              unit="fraction", window_start=now, window_end=now, method="m", method_version="1",
              evidence_digest={"sha256": H64})  # a key never admitted (its fingerprint matches nothing)
    log.forge("lab-c", Indicator, stranger, name="ai-code-share", subject="lab-c", value=0.3, unit="fraction",
              window_start=now, window_end=now, method="m", method_version="1",
              evidence_digest={"sha256": H64})  # a candidate key whose admission was rejected
    # A bad signature by lab-b's key ahead of a good one by the same key: the first one counts.
    pred = log.pred("lab-b", Indicator, name="ai-code-share", subject="lab-b", value=0.25, unit="fraction",
                    window_start=now, window_end=now, method="m", method_version="1", evidence_digest={"sha256": H64})
    log.seq["lab-b"] -= 1
    ok = sign_predicate(pred, log.keys["lab-b"])
    fp = log.keys["lab-b"].verifier().fingerprint
    log.add(_envelope(ok.payload, (fp, bytes(64)), (fp, ok.signatures[0].sig)))
    # ... while an unknown key's signature ahead of a good one is passed over: accepted.
    log.seq["lab-b"] += 1
    log.add(_envelope(ok.payload, ("00" * 32, bytes(64)), (fp, ok.signatures[0].sig)))

    # Key rotation, then a statement signed with the rotated-away key.
    old = log.keys["lab-b"]
    new = _key("lab-b", 1)
    log.sub("lab-b", KeyRotation, new_verifier_key=new.verifier().to_string())
    log.keys["lab-b"] = new
    log.forge("lab-b", Indicator, old, name="ai-code-share", subject="lab-b", value=0.3, unit="fraction",
              window_start=now, window_end=now, method="m", method_version="1", evidence_digest={"sha256": H64})
    log.sub("lab-b", Indicator, name="ai-code-share", subject="lab-b", value=0.3, unit="fraction", window_start=now,
            window_end=now, method="m", method_version="1", evidence_digest={"sha256": H64})

    # Garbage, and well-signed payloads that are not statements.
    lab_a = log.keys["lab-a"]
    for data in (b"", b"{}", b"null", b"not json", b"\xff\xfe", bytes(range(256)), b'{"payload":"!!"}',
                 b'{"payload":"","payloadType":"x","signatures":[]}', b"[" * 50_000 + b"]" * 50_000,
                 b'{"payload":' + _nested(5000) + b"}", b" " * (MAX_ENTRY_BYTES + 1),
                 sign_envelope(b"not a statement", lab_a).to_json(),
                 sign_envelope(b'{"_type": "https://in-toto.io/Statement/v1"}', lab_a).to_json(),
                 sign_envelope(canonical_json({"a": 1}), lab_a, payload_type="text/plain").to_json()):
        log.add(data)
    base_stmt = to_statement(log.pred("lab-a", Indicator, name="ai-code-share", subject="lab-a", value=0.1,
                                      unit="fraction", window_start=now, window_end=now, method="m",
                                      method_version="1", evidence_digest={"sha256": H64}))
    log.seq["lab-a"] -= 1
    for depth in (20, 150, 400, 3000):  # nested around the workers' recursion budget
        stmt = dict(base_stmt, predicate=dict(base_stmt["predicate"], method="NEST"))
        payload = canonical_json(stmt).replace(b'"NEST"', _nested(depth))
        log.add(sign_envelope(payload, lab_a).to_json())
    noncanonical = json.dumps(base_stmt, indent=1).encode()
    log.add(sign_envelope(noncanonical, lab_a).to_json())

    # A run bound to its spec, finished and verified (the spec is parsed in the workers), and its weights released.
    spec = run_spec("lab-c", "r3")
    log.sub("lab-c", RunStart, **run_start_fields("r3", "C-1", 1e21, spec=spec, when=now))
    finish_index = len(log.entries)
    log.sub("lab-c", RunFinish, **finish_fields("r3", 1e21, weights("C-1"), spec=spec, when=now))
    log.sub("audit", VerificationReport, **report_fields("lab-c", "r3", finish_index))
    log.sub("lab-c", Release, model_name="C-1", model_digest={"sha256": weights("C-1")}, released_at=now)

    # Life goes on: a review and a release (of weights no finished run produced: a violation).
    log.sub("lab-b", ReviewSubmission, submission_id="s1", model_name="B-1", model_digest={"sha256": H64})
    log.sub("gov", ReviewDecision, submitter="lab-b", submission_id="s1", decision="clear", reason="fine")
    log.sub("lab-b", Release, model_name="B-1", model_digest={"sha256": H64}, released_at=now)
    log.add(log.entries[-1].data)  # replayed
    return log


@pytest.fixture(scope="module")
def scenario() -> _Log:
    return _scenario()


@pytest.fixture
def always_parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "MIN_PARALLEL_ENTRIES", 0)
    monkeypatch.setattr(parallel, "ADMIT_WHILE_STARTING", False)


def _rejections(state: State) -> dict[int, str]:
    return {r.index: r.error for r in state.rejected}


def test_scenario_is_what_it_claims(scenario: _Log) -> None:
    state = replay(scenario.entries)
    errors = _rejections(state)
    assert state.pauses and state.releases and "lab-b" in state.parties
    assert state.runs["lab-c/r3"].verified_final and state.runs["lab-c/r3"].spec_digest is not None
    assert [(v.party, v.kind) for v in state.violations if v.kind.startswith("release")] == [
        ("lab-c", "release-during-pause"), ("lab-b", "release-during-pause"), ("lab-b", "release-unverified-weights")]
    assert list(errors.values()).count("BadSignature") == 2  # altered payload; bad signature before a good one
    assert "UnknownParty" in errors.values() and "RevokedKey" in errors.values()
    assert len(errors) < len(scenario.entries) // 2


def test_parallel_replay_gives_the_same_state(scenario: _Log, always_parallel: None,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    want = replay(scenario.entries)
    used = []

    def counting_apply(state: State, entry: Entry, pre: Prepared | None = None) -> State:
        used.append(pre is not None and pre.predicate is not None)
        return apply(state, entry, pre)

    monkeypatch.setattr(parallel, "apply", counting_apply)
    thresholds = gc.get_threshold()
    got = replay_parallel(scenario.entries, workers=2, chunk=5)
    assert gc.get_threshold() == thresholds
    assert got.digest() == want.digest()
    assert sum(used) >= len(scenario.entries) - len(want.rejected)  # every accepted entry came prepared
    assert got.to_dict() == want.to_dict()
    # Forged signatures are still refused, by the signature check.
    bad = [r for r in got.rejected if r.error == "BadSignature"]
    assert len(bad) == 2 and all("does not verify" in r.message for r in bad)


def test_leading_entries_admitted_while_the_workers_start(scenario: _Log, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first entries are admitted in the calling process, the rest come prepared: the same state."""
    monkeypatch.setattr(parallel, "MIN_PARALLEL_ENTRIES", 12)
    monkeypatch.setattr(parallel, "HEAD_ENTRIES", 7)
    monkeypatch.setattr(parallel, "ADMIT_WHILE_STARTING", False)
    used = []

    def counting_apply(state: State, entry: Entry, pre: Prepared | None = None) -> State:
        used.append(pre is not None)
        return apply(state, entry, pre)

    monkeypatch.setattr(parallel, "apply", counting_apply)
    got = replay_parallel(scenario.entries, workers=2, chunk=3)
    assert got.to_dict() == replay(scenario.entries).to_dict()
    assert used[:7] == [False] * 7 and sum(used[7:]) > len(used) // 2


def test_entries_admitted_here_for_as_long_as_the_helpers_are_starting(scenario: _Log,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Until every helper has said it started, this process goes on admitting entries itself, a step at a time;
    then the helpers prepare the rest. The state is the same."""
    monkeypatch.setattr(parallel, "MIN_PARALLEL_ENTRIES", 12)
    monkeypatch.setattr(parallel, "HEAD_ENTRIES", 7)
    monkeypatch.setattr(parallel, "STARTING_STEP", 4)
    ready = parallel._Helpers.ready
    asked: list[bool] = []

    def slow_to_start(self: parallel._Helpers, wait: bool = False) -> bool:
        asked.append(wait)
        if len(asked) <= 3:  # still starting, the first three times this process looks
            return False
        return ready(self, True)  # then started (waiting for it here makes the count exact)

    used = []

    def counting_apply(state: State, entry: Entry, pre: Prepared | None = None) -> State:
        used.append(pre is not None)
        return apply(state, entry, pre)

    monkeypatch.setattr(parallel._Helpers, "ready", slow_to_start)
    monkeypatch.setattr(parallel, "apply", counting_apply)
    got = replay_parallel(scenario.entries, workers=2, chunk=3)
    assert got.to_dict() == replay(scenario.entries).to_dict()
    head = 7 + 3 * 4  # the head, then one step each time the helpers were still starting
    assert used[:head] == [False] * head and all(used[head:head + 6])
    assert asked[:4] == [False] * 4  # it looked without waiting


def test_a_short_log_is_done_before_the_helpers_have_started(scenario: _Log,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "MIN_PARALLEL_ENTRIES", 12)
    monkeypatch.setattr(parallel._Helpers, "ready", lambda self, wait=False: False)
    used = []

    def counting_apply(state: State, entry: Entry, pre: Prepared | None = None) -> State:
        used.append(pre is not None)
        return apply(state, entry, pre)

    monkeypatch.setattr(parallel, "apply", counting_apply)
    assert replay_parallel(scenario.entries, workers=2, chunk=3).to_dict() == replay(scenario.entries).to_dict()
    assert len(used) == len(scenario.entries) and not any(used)


def test_parallel_replay_from_an_iterator_and_a_given_state(scenario: _Log, always_parallel: None) -> None:
    entries = scenario.entries
    want = replay(entries).digest()
    half = len(entries) // 2
    state = replay(entries[:half])

    def gen() -> Iterator[Entry]:
        yield from entries[half:]

    assert replay_parallel(gen(), state, workers=2, chunk=16).digest() == want


def test_an_iterator_that_fails_midway(scenario: _Log, always_parallel: None) -> None:
    """The entries before the failure are applied, then the error comes out: as from replay."""

    def failing() -> Iterator[Entry]:
        yield from scenario.entries[:40]
        raise OSError("disk gone")

    want, got = State(), State()
    with pytest.raises(OSError, match="disk gone"):
        replay(failing(), want)
    with pytest.raises(OSError, match="disk gone"):
        replay_parallel(failing(), got, workers=2, chunk=8)
    assert got.next_index == 40 and got.digest() == want.digest()


def _at_depth(frames: int, fn: Callable[[], _T]) -> _T:
    return fn() if frames <= 0 else _at_depth(frames - 1, fn)


def test_deep_caller_stack(scenario: _Log, always_parallel: None) -> None:
    """Called with little stack left (less than the workers parse with), it replays sequentially."""
    frames = sys.getrecursionlimit() - 230 - len(_frames())
    want = _at_depth(frames, lambda: replay(scenario.entries).digest())
    got = _at_depth(frames, lambda: replay_parallel(scenario.entries, workers=2, chunk=64).digest())
    assert got == want


def _frames() -> list[Any]:
    out, f = [], sys._getframe()
    while f is not None:
        out.append(f)
        f = f.f_back
    return out


def test_prepared_admit_matches_admit_entry_by_entry(scenario: _Log) -> None:
    """``admit`` with a ``Prepared`` returns or raises exactly what it does without one, at every step."""
    cands = candidate_keys(e.data for e in scenario.entries)
    assert len(cands) == 1 + 5 + 1 + 1  # coordinator, five parties, the stranger, lab-b's new key
    state = State()
    used = 0
    for e in scenario.entries:
        outcomes = []
        full = prepare(e.data, cands)
        chunked = parallel._prepared(parallel._prepare_chunk([e.data], cands)[0])  # as the helpers send it
        if full is None:
            assert chunked is None
        else:
            assert chunked is not None and chunked.envelope is None
            assert (chunked.keyids, chunked.verified, chunked.predicate) == (full.keyids, full.verified, full.predicate)
        # a signature known to verify, the statement left to admit (what a helper sends when it does not parse)
        unparsed = None if full is None or full.envelope is None else full._replace(
            predicate=None, envelope=None, payload_type=full.envelope.payload_type, payload=full.envelope.payload)
        for pre in (None, full, prepare(e.data, {}), chunked, unparsed):
            try:
                pred, party, key = admit(state, e.data, pre)
                outcomes.append(("ok", pred, party.name if party else None, key))
            except RedlineError as exc:
                outcomes.append((type(exc).__name__, str(exc)))
        assert outcomes[1:] == [outcomes[0]] * 4, e.index
        pre = prepare(e.data, cands)
        if outcomes[0][0] == "ok" and e.index > 0:
            assert pre is not None and pre.predicate is not None and pre.verified
            used += 1
        apply(state, e, pre)
    assert used > 20
    assert state.digest() == replay(scenario.entries).digest()


def test_prepare_never_raises_on_garbage() -> None:
    cands = {k.fingerprint: k for k in (_key("a").verifier(),)}
    for data in (b"", b"\x00" * 10, b"{" * 10_000, b'{"payload":"' + base64.b64encode(b"x" * 100) + b'"}',
                 _envelope(b"{}", ("zz", b"")), _envelope(b"[]", (next(iter(cands)), bytes(64)))):
        pre = prepare(data, cands)
        assert pre is None or (not pre.verified and pre.predicate is None)


def test_candidate_keys_ignore_what_does_not_parse() -> None:
    key = _key("lab-z").verifier()
    stmt = {"predicateType": "urn:redline:admission:v1", "predicate": {"verifier_key": key.to_string()}}
    good = _envelope(json.dumps(stmt).encode(), ("00", b""))
    spaced = json.dumps(json.loads(good), indent=2).encode()  # not written canonically: parsed properly
    bad_key = {"predicateType": "urn:redline:admission:v1", "predicate": {"verifier_key": "nope"}}
    assert candidate_keys([good]) == {key.fingerprint: key}
    assert candidate_keys([spaced]) == {key.fingerprint: key}
    assert candidate_keys([b"", b"garbage", _envelope(json.dumps(bad_key).encode(), ("00", b"")),
                           b'{"payload":"%%%"}']) == {}


def test_short_logs_and_one_worker_replay_sequentially(scenario: _Log) -> None:
    want = replay(scenario.entries).digest()
    assert replay_parallel(scenario.entries, workers=1).digest() == want
    assert replay_parallel(scenario.entries[:10], workers=2).digest() == replay(scenario.entries[:10]).digest()



def test_fresh_helpers_never_import_a_redline_planted_in_the_working_directory(
        scenario: _Log, always_parallel: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A multi-threaded caller (`redline serve`) starts fresh interpreters: they must import the caller's own
    # redline, never a `redline` package planted in the working directory (`python -c` puts it first on the path;
    # so does a caller started as `python -m redline`), which would forge the state.
    planted = tmp_path / "redline"
    planted.mkdir()
    mark = tmp_path / "planted-ran"
    (planted / "__init__.py").write_text(f"open({str(mark)!r}, 'w').write('ran')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", ["", *sys.path])  # as `python -m redline serve` has it
    monkeypatch.setattr(parallel, "FORK_HELPERS", False)
    got = replay_parallel(scenario.entries, workers=2, chunk=5)
    assert got.digest() == replay(scenario.entries).digest()
    assert not mark.exists()
