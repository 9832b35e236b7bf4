"""``docs/statements.md`` is true: one complete example per statement kind, each one accepted by a real log.

The examples tell one story. Every ``json kind=KIND`` block is parsed, checked to be
the complete canonical fields of its kind (every nullable field present), and
submitted in the document's order to a real registry over a real SQLite log whose
clock is set to the story's day; the state is checked after each. The last kinds go
through the real command line (``redline submit --key --kind``, and ``redline sign``
then ``redline submit`` of the envelope), with the exit codes of a bad kind, a bad
field, an existing output file and a wrong offline sequence number.

When a check here fails because the statement format, a policy pack or the engine
changed, update ``docs/statements.md`` (its examples and what it says about them).
"""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from scenario_kit import LOG_NAME, World, key, make_world

from redline.cli.main import cli
from redline.crypto.canonical import canonical_json
from redline.crypto.keys import VerifierKey, save_signing_key
from redline.engine import Entry, State, replay
from redline.engine.replay import ROLES_ALLOWED
from redline.log.service import Log
from redline.log.sqlite import SqliteStore
from redline.policy import load_pack
from redline.policy.metrics import INDICATOR_METRICS
from redline.statements import PREDICATE_KINDS, ROLES, RunSpec, sign_predicate

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "statements.md"
UPDATE = "update docs/statements.md"
_BLOCK = re.compile(r"^```json kind=([a-z0-9-]+)[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)

#: The story: each kind in the document's order, and who makes it (several parties: each makes the same fields).
STORY: list[tuple[str, tuple[str, ...]]] = [
    ("policy", ("coordinator",)),
    ("compute-inventory", ("lab-a",)),
    ("commitment", ("lab-a", "lab-b")),
    ("run-start", ("lab-a",)),
    ("run-progress", ("lab-a",)),
    ("run-finish", ("lab-a",)),
    ("verification-report", ("audit",)),
    ("evaluation", ("lab-a",)),
    ("review-submission", ("lab-a",)),
    ("review-finding", ("audit",)),
    ("review-decision", ("gov",)),
    ("release", ("lab-a",)),
    ("indicator", ("audit",)),
    ("compute-usage", ("lab-a",)),
    ("compute-attestation", ("lab-a",)),
    ("pause-ack", ("lab-a", "lab-b")),
    ("resume-proposal", ("lab-a",)),
    ("resume-approval", ("lab-a", "lab-b")),
    ("base-model", ("gov",)),
    ("key-rotation", ("lab-b",)),
    ("key-revocation", ("coordinator",)),
    ("admission", ("coordinator",)),
]
#: The kinds the test submits through the command line (after the pause has ended, so the real clock of the
#: command's log would not matter either).
CLI_KINDS = ("base-model", "key-rotation", "key-revocation", "admission")
#: Who the story's log admits before the first example (entries 1-5), in this order.
PARTIES = [("lab-a", "lab"), ("lab-b", "lab"), ("lab-c", "lab"), ("gov", "regulator"), ("audit", "auditor")]
#: The log's time for the whole story: the examples' times are all before it and within the policy's bounds.
STORY_MS = int(datetime(2027, 6, 1, 12, tzinfo=UTC).timestamp() * 1000)


def examples() -> dict[str, dict[str, Any]]:
    """The example fields in docs/statements.md by kind, in the document's order."""
    found: dict[str, dict[str, Any]] = {}
    for m in _BLOCK.finditer(DOC.read_text("utf-8")):
        kind = m.group(1)
        assert kind not in found, f"docs/statements.md has two examples of {kind!r}"
        try:
            found[kind] = json.loads(m.group(2))
        except json.JSONDecodeError as exc:
            pytest.fail(f"docs/statements.md: the {kind} example is not JSON: {exc}")
    return found


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    return examples()


def redline(*args: str | Path, input: bytes | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


# --- the document -----------------------------------------------------------------------------


def test_one_example_per_kind_but_genesis_in_story_order(docs: dict[str, dict[str, Any]]) -> None:
    want = set(PREDICATE_KINDS) - {"genesis"}
    assert set(docs) == want, (f"{UPDATE}: examples missing for {sorted(want - set(docs))}, "
                               f"unknown kinds {sorted(set(docs) - want)}")
    assert list(docs) == [kind for kind, _ in STORY], f"{UPDATE}: the examples are not in the story's order"
    assert "redline party genesis" in DOC.read_text("utf-8")


def test_every_example_is_the_complete_canonical_fields_of_its_kind(docs: dict[str, dict[str, Any]]) -> None:
    """Every field present (nullable ones as null) and already in canonical form: what a signed statement holds."""
    for kind, parties in STORY:
        fields = docs[kind]
        pred = PREDICATE_KINDS[kind].from_json_obj({"party": parties[0], "seq": 1, "log": LOG_NAME, **fields})
        canonical = {k: v for k, v in pred.to_json_obj().items() if k not in ("party", "seq", "log")}
        for name, value in canonical.items():
            assert name in fields, f"{UPDATE}: the {kind} example leaves out field {name!r} " \
                                   f"(canonical: {json.dumps(value)})"
        assert canonical_json(fields) == canonical_json(canonical), \
            f"{UPDATE}: the {kind} example is not in canonical form:\n{json.dumps(canonical, indent=2)}"


def test_the_policy_example_is_the_current_coordinated_pause_pack(docs: dict[str, dict[str, Any]]) -> None:
    pack = load_pack("coordinated-pause")
    regenerate = (f"{UPDATE}: the coordinated-pause pack (or the policy model) changed; regenerate the policy "
                  f"example's document from `redline policy show coordinated-pause --json` and put its digest "
                  f"{pack.digest} everywhere the old one was")
    assert docs["policy"]["document"] == pack.document(), regenerate
    assert docs["policy"]["document_digest"] == pack.digest, regenerate
    assert docs["commitment"]["policy_digest"] == pack.digest, regenerate


def test_the_run_declarations_carry_the_digest_of_the_run_start_spec(docs: dict[str, dict[str, Any]]) -> None:
    spec = RunSpec.model_validate_json(json.dumps(docs["run-start"]["spec"]))
    for kind in ("run-progress", "run-finish"):
        assert docs[kind]["spec_digest"] == spec.digest(), f"{UPDATE}: the {kind} example's spec_digest is not " \
                                                           f"the run-start spec's digest {spec.digest()}"


def test_every_chip_and_indicator_name_is_listed() -> None:
    text = DOC.read_text("utf-8")
    with (ROOT / "src" / "redline" / "compute" / "chips.csv").open(encoding="utf-8") as f:
        chips = [row["chip"] for row in csv.DictReader(f)]
    missing = [c for c in chips if f"| `{c}` |" not in text]
    assert not missing, f"{UPDATE}: the chip table lacks {missing}"
    for name, metric in INDICATOR_METRICS.items():
        assert f"`{name}`" in text and f"`{metric}`" in text, f"{UPDATE}: indicator {name} ({metric}) not listed"


#: How the roles table names each role (plural or not); "any party" is every role.
_ROLE_WORDS = {"lab": r"\blabs?\b", "auditor": r"\bauditors?\b", "regulator": r"\bregulators?\b",
               "coordinator": r"\bcoordinator\b", "provider": r"\bproviders?\b"}


def test_the_roles_table_is_the_engines() -> None:
    """Each kind is in one row of the roles table, and the row names exactly the roles the engine allows."""
    text = DOC.read_text("utf-8")
    table = text[text.index("### Roles"):text.index("## The story")]
    rows: dict[str, set[str]] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not cells[0].startswith("`"):
            continue
        who = cells[1]
        roles = set(ROLES) if "any party" in who else {r for r, word in _ROLE_WORDS.items() if re.search(word, who)}
        for kind in re.findall(r"`([a-z-]+)`", cells[0]):
            assert kind not in rows, f"{UPDATE}: {kind} is in two rows of the roles table"
            rows[kind] = roles
    assert set(rows) == set(PREDICATE_KINDS) - {"genesis"}, f"{UPDATE}: the roles table lacks " \
        f"{sorted(set(PREDICATE_KINDS) - {'genesis'} - set(rows))}"
    for kind, roles in rows.items():
        allowed = set(ROLES_ALLOWED[PREDICATE_KINDS[kind]])
        if roles != set(ROLES):  # "any party": every role, the witness included
            allowed.discard("witness")
        assert roles == allowed, f"{UPDATE}: the roles table says {sorted(roles)} may make {kind}; the engine " \
                                 f"allows {sorted(allowed)}"


# --- the story on a real log -------------------------------------------------------------------


#: ``redline sign ... --kind KIND --key PARTY.key --seq N`` in the document.
_SIGN = re.compile(r"redline sign \S+ --kind ([a-z-]+) --key ([a-z0-9.-]+)\.key --seq (\d+)")


def submit(world: World, party: str, kind: str, fields: dict[str, Any], seqs: dict[tuple[str, str], int]) -> int:
    """Sign ``fields`` as ``redline submit --key --kind`` does and submit them; return the entry's index."""
    seqs[kind, party] = world.registry.next_seq(party)
    body = {"party": party, "seq": seqs[kind, party], "log": world.log.origin, **fields}
    pred = PREDICATE_KINDS[kind].from_json_obj(body)
    return world.registry.submit(sign_predicate(pred, world.keys[party]).to_json()).index


def logged_state(path: Path) -> tuple[State, list[bytes]]:
    """The state replayed from the log file, as a fresh reader sees it, and the log's entries."""
    log = Log.open(SqliteStore(path))
    try:
        entries = [Entry(i, t, e) for i, t, e in log.entries()]
    finally:
        log.store.close()
    return replay(entries, State(origin=log.origin)), [e.data for e in entries]


def test_every_example_is_accepted_in_story_order(tmp_path: Path, docs: dict[str, dict[str, Any]],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    world = make_world(tmp_path, PARTIES, start_ms=STORY_MS)
    st = world.state
    pack = load_pack("coordinated-pause")
    final = docs["run-finish"]["final_model_digest"]["sha256"]
    at: dict[str, list[int]] = {}
    story_seqs: dict[tuple[str, str], int] = {}

    for kind, parties in STORY:
        if kind in CLI_KINDS:
            break
        fields = docs[kind]
        if kind == "verification-report":
            assert fields["declaration_index"] == st.runs["lab-a/a-7"].finish_index, \
                f"{UPDATE}: the story's RunFinish is entry {st.runs['lab-a/a-7'].finish_index}"
        if kind == "pause-ack":
            assert fields["pause_id"] == st.pauses[-1].pause_id, \
                f"{UPDATE}: the story's pause id is {st.pauses[-1].pause_id!r}"
        at[kind] = [submit(world, p, kind, fields, story_seqs) for p in parties]
        i = at[kind][-1]
        assert not st.rejected and not st.violations, (kind, st.rejected, st.violations)

        if kind == "policy":
            assert st.policies[pack.digest]["status"] == "in-force" and st.in_force == [pack.digest]
        elif kind == "compute-inventory":
            assert st.clusters["lab-a"] == {"ohio-1": 8192.0, "oregon-2": round(2048 * 2250 / 989 + 1024, 6)}
            assert [(c.line, c.subject, c.consequence) for c in st.crossings] == [
                ("covered-cluster", "lab-a/ohio-1", "flag"), ("covered-cluster", "lab-a/oregon-2", "flag")]
        elif kind == "commitment":
            for lab in ("lab-a", "lab-b"):
                c = st.commitments[lab][pack.digest]
                assert (c.pauses, c.quorum_kind, c.threshold) == (["training", "releases"], "count", 2.0)
            assert st.pauses == [] and st.status == "normal"  # met quorum, but no pause line crossed yet
        elif kind == "run-start":
            run = st.runs["lab-a/a-7"]
            assert (run.model_name, run.declared_flop, run.indexes) == ("A-7", 3e24, [i])
            assert run.spec_digest == docs["run-progress"]["spec_digest"] and st.models["A-7"] == "lab-a/a-7"
            assert st.crossings[-1].line == "pre-release-review" and st.review_required["A-7"]["index"] == i
        elif kind == "run-progress":
            run = st.runs["lab-a/a-7"]
            assert (run.flop_so_far, run.last_step, run.compute) == (1.2e24, 40000, 3e24)
            assert any(o.kind == "run-finish" and o.met_index is None for o in st.obligations)
        elif kind == "run-finish":
            run = st.runs["lab-a/a-7"]
            assert (run.finished, run.total_flop, run.final_digest, run.finish_index) == (True, 2.9e24, final, i)
            assert st.final_weights[final] == "lab-a/a-7"
            assert all(o.met_index is not None for o in st.obligations if o.kind == "run-finish")
        elif kind == "verification-report":
            run = st.runs["lab-a/a-7"]
            assert (run.verified, run.verified_final, run.verified_final_index) == ("pass", True, i)
        elif kind == "evaluation":
            assert st.indicators["research-task-completion:A-7"] == {"value": 0.31, "by": "lab-a", "index": i}
        elif kind == "review-submission":
            review = st.reviews["lab-a/a-7-review"]
            assert (review.party, review.model_name, review.model_digest, review.window_days) == \
                ("lab-a", "A-7", final, 30.0)
        elif kind == "review-finding":
            assert [(f["by"], f["severity"], f["index"]) for f in st.reviews["lab-a/a-7-review"].findings] == \
                [("audit", "info", i)]
        elif kind == "review-decision":
            review = st.reviews["lab-a/a-7-review"]
            assert (review.decision, review.decision_index) == ("clear", i)
        elif kind == "release":
            assert st.releases == [{"party": "lab-a", "model": "A-7", "index": i, "digest": final,
                                    "run": "lab-a/a-7"}]
        elif kind == "indicator":
            assert st.indicators["time-horizon-50:A-7"] == {"value": 9.5, "by": "audit", "index": i}
            crossing = st.crossings[-1]
            assert (crossing.line, crossing.subject, crossing.evidence, crossing.consequence) == \
                ("time-horizon", "A-7", "attested", "pause")
            [pause] = st.pauses
            assert (pause.pause_id, pause.trigger_index, pause.bound) == (str(i), i, ["lab-a", "lab-b"])
            assert st.status == "paused"
        elif kind == "compute-usage":
            assert [o.met_index for o in st.obligations if o.kind == "usage-report" and o.party == "lab-a"] == [i]
        elif kind == "compute-attestation":
            rec = st.attested[f"lab-a@{int(datetime(2027, 5, 20, tzinfo=UTC).timestamp() * 1000)}"]
            assert (rec["entries"], list(rec["usage"])) == ([i], ["ohio-1/H100 SXM"])
            assert st.findings == {}  # a week of 8,192 H100 at half time: the declared run explains it
        elif kind == "pause-ack":
            assert st.pauses[-1].acknowledged == dict(zip(("lab-a", "lab-b"), at[kind]))
            assert all(o.met_index is not None for o in st.obligations if o.kind == "acknowledgement")
        elif kind == "resume-proposal":
            assert st.pauses[-1].proposals["resume-a-7"]["by"] == "lab-a"
        elif kind == "resume-approval":
            pause = st.pauses[-1]
            assert pause.proposals["resume-a-7"]["approvals"] == dict(zip(("lab-a", "lab-b"), at[kind]))
            assert pause.ended_index == i and st.status == "resumed"
            assert all(o.met_index is not None for o in st.obligations)

    signs = _SIGN.findall(DOC.read_text("utf-8").replace("\\\n", " ").replace("\n    ", " "))
    assert signs, "docs/statements.md shows no `redline sign` command"
    for kind, party, seq in signs:
        assert story_seqs.get((kind, party)) == int(seq), \
            f"{UPDATE}: `redline sign --kind {kind} --key {party}.key --seq {seq}`: in the story that statement's " \
            f"seq is {story_seqs.get((kind, party))}"

    # --- the rest through the command line: `redline submit --key --kind`, and `redline sign` then `submit` ---
    logdir = tmp_path
    save_signing_key(key(LOG_NAME), logdir / "log.key")
    for name, k in world.keys.items():
        save_signing_key(k, tmp_path / f"{name}.key")
    real_open = Log.open

    def open_at_story_time(store: Any, **kw: Any) -> Log:
        return real_open(store, **{**kw, "clock": world.clock})  # the command's log keeps the story's clock

    monkeypatch.setattr(Log, "open", open_at_story_time)
    seqs = {p.name: p.last_seq for p in st.parties.values()}
    n = st.next_index

    def fields_file(kind: str) -> Path:
        path = tmp_path / f"{kind}.json"
        path.write_text(json.dumps(docs[kind]))
        return path

    def sign(kind: str, party: str, *extra: str | Path, seq: int | None = None) -> Result:
        return redline("sign", fields_file(kind), "--kind", kind, "--key", tmp_path / f"{party}.key",
                       "--seq", str(seq or seqs[party] + 1), "--log-origin", LOG_NAME, *extra)

    result = redline("submit", logdir, fields_file("base-model"), "--key", tmp_path / "gov.key", "--kind", "base-model")
    assert result.exit_code == 0, result.output
    assert f"accepted: entry {n}, base-model #{seqs['gov'] + 1} from gov" in result.stdout

    envelope = tmp_path / "rotation.envelope.json"
    assert sign("key-rotation", "lab-b", "-o", envelope).exit_code == 0
    signed = envelope.read_bytes()
    failed = sign("key-rotation", "lab-b", "-o", envelope)
    assert failed.exit_code == 73 and "refusing to overwrite" in failed.stderr and envelope.read_bytes() == signed
    failed = redline("sign", fields_file("key-rotation"), "--kind", "key-rotate", "--key", tmp_path / "lab-b.key",
                     "--seq", "1", "--log-origin", LOG_NAME, "-o", tmp_path / "other.json")
    assert failed.exit_code == 65 and "unknown statement kind 'key-rotate'" in failed.stderr
    assert "key-rotation" in failed.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"new_verifier_key": "lab-b+00000000+AAAA"}))
    failed = redline("sign", bad, "--kind", "key-rotation", "--key", tmp_path / "lab-b.key", "--seq", "1",
                     "--log-origin", LOG_NAME, "-o", tmp_path / "other.json")
    assert failed.exit_code == 65 and "field 'new_verifier_key'" in failed.stderr
    assert not (tmp_path / "other.json").exists()
    result = redline("submit", logdir, envelope)
    assert result.exit_code == 0, result.output
    assert f"accepted: entry {n + 1}, key-rotation #{seqs['lab-b'] + 1} from lab-b" in result.stdout

    stale = sign("key-revocation", "coordinator", seq=seqs["coordinator"] + 2)  # stdout; one seq too far
    assert stale.exit_code == 0, stale.output
    skipped = tmp_path / "revocation.skipped.json"
    skipped.write_bytes(stale.stdout_bytes)
    failed = redline("submit", logdir, skipped)
    assert failed.exit_code == 65 and "sequence number" in failed.stderr
    revocation = sign("key-revocation", "coordinator")
    (tmp_path / "revocation.envelope.json").write_bytes(revocation.stdout_bytes)
    assert redline("submit", logdir, tmp_path / "revocation.envelope.json").exit_code == 0

    assert sign("admission", "coordinator", "-o", tmp_path / "admission.env", seq=seqs["coordinator"] + 2) \
        .exit_code == 0
    assert redline("submit", logdir, tmp_path / "admission.env").exit_code == 0

    st, entries = logged_state(world.path)
    assert not st.rejected and not st.violations, (st.rejected, st.violations)
    assert st.next_index == n + 4
    base = docs["base-model"]
    assert st.bases[base["model_digest"]] == {"model_name": base["model_name"], "training_flop": 6.3e24,
                                              "source": base["source"], "party": "gov", "index": n}
    new_key = VerifierKey.from_string(docs["key-rotation"]["new_verifier_key"])
    assert st.parties["lab-b"].key.to_string() == new_key.to_string()
    assert st.retired_keys[key("lab-b").verifier().fingerprint] == "lab-b"
    assert st.parties["lab-c"].revoked and docs["key-revocation"]["key_fingerprint"] in st.retired_keys
    assert (st.parties["lab-d"].role, st.parties["lab-d"].admitted_index) == ("lab", n + 3)
    assert entries[n + 1] == signed  # the envelope `redline sign` wrote is the log's entry, byte for byte
