"""redline.errors: one hierarchy, structured fields beside unchanged messages, ``to_dict`` for JSON faces."""

from __future__ import annotations

import ast
import inspect
import json
import pickle
from pathlib import Path

import pytest

import redline.errors as errors
from redline.errors import (
    AmbiguousFactory,
    BadSignature,
    EntryTooLarge,
    FactoryPinMismatch,
    FetchError,
    InconsistentLog,
    InputTooLarge,
    InvalidStatement,
    KeyMaterialError,
    MalformedInput,
    MalformedKey,
    NotAuthorized,
    RedlineError,
    RevokedKey,
    SequenceError,
    SplitView,
    UnknownKey,
    WitnessRefused,
)

SRC = Path(__file__).resolve().parent.parent / "src" / "redline"
#: Every error class, by name.
CLASSES = {name: obj for name, obj in vars(errors).items()
           if inspect.isclass(obj) and issubclass(obj, RedlineError)}
#: Arguments besides the message that a class's __init__ requires.
REQUIRED = {AmbiguousFactory: {"field": "model_factory", "name": "x", "group": "redline.models",
                               "distributions": ["a", "b"]},
            FactoryPinMismatch: {"field": "model_factory", "name": "x", "group": "redline.models",
                                 "what": "version", "want": "1", "got": "2"}}


def make(cls: type[RedlineError], message: str = "it went wrong") -> RedlineError:
    return cls(message, **REQUIRED.get(cls, {}))  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", list(CLASSES.values()), ids=list(CLASSES))
def test_every_error_keeps_its_message_and_gives_a_json_dict(cls: type[RedlineError]) -> None:
    exc = make(cls)
    assert str(exc) == "it went wrong" and exc.args == ("it went wrong",)
    d = exc.to_dict()
    assert list(d)[:2] == ["error", "message"]
    assert d["error"] == cls.__name__ and d["message"] == "it went wrong"
    assert set(d) == {"error", "message", *cls.field_names()}
    json.dumps(d)  # JSON-able
    for name in cls.field_names():
        assert hasattr(exc, name), f"{cls.__name__}.{name}"
    assert exc.fields() == {k: v for k, v in d.items() if k not in ("error", "message") and v is not None}


@pytest.mark.parametrize("cls", list(CLASSES.values()), ids=list(CLASSES))
def test_every_error_pickles_with_its_fields(cls: type[RedlineError]) -> None:
    """Errors cross process boundaries (the parallel replay's workers): class, message and fields survive."""
    exc = make(cls)
    for name in cls.field_names():
        if getattr(exc, name) is None:
            setattr(exc, name, f"value of {name}")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is cls and str(back) == str(exc) and back.to_dict() == exc.to_dict()


def test_fields_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        BadSignature("m", "k")  # type: ignore[misc]
    with pytest.raises(TypeError):
        InputTooLarge("m", 1, 2)  # type: ignore[misc]
    with pytest.raises(TypeError):
        NotAuthorized("m", key_name="k")  # type: ignore[call-arg]
    assert InconsistentLog("m", 7).index == 7  # as it always took it


def test_fields_of_a_class_and_its_bases() -> None:
    assert MalformedInput.field_names() == ("path",)
    assert InputTooLarge.field_names() == ("path", "size", "limit")
    assert EntryTooLarge.field_names() == ("path", "size", "limit")
    assert SequenceError.field_names() == ("path", "field", "party", "expected", "got")
    assert RevokedKey.field_names() == ("party", "role")
    assert UnknownKey.field_names() == ("key_name", "key_id")
    assert SplitView.field_names() == ("index",)
    assert MalformedKey.field_names() == ("path",)
    e = EntryTooLarge("entry is 70000 bytes", size=70_000, limit=65_527)
    assert isinstance(e, InputTooLarge) and e.exit_code == 65
    assert e.to_dict() == {"error": "EntryTooLarge", "message": "entry is 70000 bytes", "path": None,
                           "size": 70_000, "limit": 65_527}
    k = MalformedKey("bad key", path="/x.key")
    assert k.path == "/x.key" and isinstance(k, KeyMaterialError) and isinstance(k, MalformedInput)
    assert KeyMaterialError("no key file at /y", path="/y").to_dict()["path"] == "/y"
    assert SplitView("two roots", index=4).to_dict()["index"] == 4


def test_the_structured_fields_go_names() -> None:
    e = BadSignature("signature by key 'k' does not verify", key_name="k", key_id=bytes.fromhex("c74f20a3").hex())
    assert e.to_dict() == {"error": "BadSignature", "message": "signature by key 'k' does not verify",
                           "key_name": "k", "key_id": "c74f20a3"}
    assert UnknownKey("no known key").fields() == {}
    s = SequenceError("x: sequence number 5 from 'lab' skips (expected 3)", party="lab", expected=3, got=5)
    assert (s.party, s.expected, s.got, s.field) == ("lab", 3, 5, "seq")
    n = NotAuthorized("only labs", party="auditor.example", role="auditor")
    assert n.fields() == {"party": "auditor.example", "role": "auditor"}
    assert FetchError("GET u: HTTP 500", url="u", status=500).fields() == {"url": "u", "status": 500}
    assert WitnessRefused("refused", status=409, size=3).fields() == {"status": 409, "size": 3}
    assert BadSignature("m", key_name="k").to_dict()["key_id"] is None


@pytest.mark.parametrize(("message", "field"), [
    ("field 'run_id': no run 'r' declared by 'lab'", "run_id"),
    ("https://redline.example/run-start/v1: field 'spec.init.seed': must be an integer", "spec.init.seed"),
    ("https://redline.example/run-start/v1: field 'a': x; field 'b': y", "a"),
    ("party 'x' is already admitted", None),
    ("the log's first entry must be a genesis statement naming the coordinator key", None),
    ("review 'lab/s1' was already decided (entry 3); see field 'decision'", None),
])
def test_invalid_statement_reads_its_field_from_the_message(message: str, field: str | None) -> None:
    assert InvalidStatement(message).field == field
    assert InvalidStatement(message, field="given").field == "given"
    assert str(InvalidStatement(message)) == message


def test_raise_sites_fill_their_fields(tmp_path: Path) -> None:
    from redline.cli.inputs import read_bounded
    from redline.crypto.keys import SigningKey
    from redline.crypto.note import open_note, sign_note
    from redline.log.leaf import MAX_ENTRY_BYTES, encode_leaf

    with pytest.raises(EntryTooLarge) as too_large:
        encode_leaf(0, bytes(MAX_ENTRY_BYTES + 1))
    assert (too_large.value.size, too_large.value.limit) == (MAX_ENTRY_BYTES + 1, MAX_ENTRY_BYTES)
    big = tmp_path / "big"
    big.write_bytes(bytes(11))
    with pytest.raises(InputTooLarge) as over:
        read_bounded(big, 10)
    assert over.value.fields() == {"path": str(big), "size": 11, "limit": 10}
    assert str(over.value) == f"{big} is 11 bytes, over the limit of 10"
    with pytest.raises(MalformedInput) as not_regular:
        read_bounded(tmp_path, 10)
    assert not_regular.value.path == str(tmp_path)
    k = SigningKey("k.example", bytes(32))
    forged = b"text\n\n" + sign_note("other\n", k).split(b"\n\n")[1]
    with pytest.raises(BadSignature) as bad:
        open_note(forged, [k.verifier()])
    assert bad.value.fields() == {"key_name": "k.example", "key_id": k.key_id.hex()}


def test_no_error_class_lives_outside_redline_errors() -> None:
    """Every exception class redline defines is in redline.errors (a module may import one to re-export it);
    private ones (``_Stale``, ``_NeedsSlowPath``, ...) are control flow inside one module, never raised out of it."""
    found = []
    for path in SRC.rglob("*.py"):
        if path.name == "errors.py" and path.parent == SRC:
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
                continue
            bases = {b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else "" for b in
                     node.bases}
            if bases & {"Exception", "ValueError", "RuntimeError", "TypeError", "KeyError", "OSError", *CLASSES}:
                found.append(f"{path.relative_to(SRC).as_posix()}:{node.name}")
    assert not found, f"exception classes outside redline.errors: {found}"


def test_the_server_problem_carries_the_fields() -> None:
    pytest.importorskip("fastapi")
    from redline.server.app import problem

    exc = SequenceError("x: sequence number 5 from 'lab' replays (expected 6)", party="lab", expected=6, got=5)
    body = json.loads(problem(409, type(exc).__name__, str(exc), fields=exc.fields()).body)
    assert body == {"type": "about:blank", "title": "Conflict", "status": 409, "error": "SequenceError",
                    "detail": str(exc), "field": "seq", "party": "lab", "expected": 6, "got": 5}
    # a field named like a standard member does not replace it
    refused = WitnessRefused("refused", status=409, size=3)
    body = json.loads(problem(503, "WitnessRefused", str(refused), fields=refused.fields()).body)
    assert body["status"] == 503 and body["size"] == 3


def test_the_monitor_round_carries_the_fields() -> None:
    from redline.cli.monitor import Round

    r = Round(1, "error", error=FetchError("GET http://x/checkpoint: HTTP 500", url="http://x/checkpoint",
                                           status=500)).to_json()
    assert r == {"round": 1, "status": "error", "error": "FetchError", "message": "GET http://x/checkpoint: HTTP 500",
                 "exit_code": 4, "error_fields": {"url": "http://x/checkpoint", "status": 500}}
    assert "error_fields" not in Round(2, "error", error=MalformedInput("bad")).to_json()
