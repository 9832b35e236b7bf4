"""Fuzz the witness protocol parsers: add-checkpoint requests, cosignature lines and witness trust files."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from redline.crypto.keys import SigningKey
from redline.log.checkpoint import Checkpoint
from redline.log.witness import (
    WitnessPolicy,
    add_checkpoint_request,
    cosign,
    parse_add_checkpoint_request,
    parse_signature_lines,
    witness_verifier,
)

from .common import fuzz_settings, json_bytes, mutated, mutated_text, ok, outcome

LOG = SigningKey("example.com/log", bytes(range(32)))
WITNESSES = [SigningKey(f"w{i}.example", bytes([i]) * 32) for i in range(1, 4)]
CHECKPOINT = Checkpoint("example.com/log", 9, bytes(range(32)))
SIGNED = CHECKPOINT.sign(LOG)

_REQUESTS = [add_checkpoint_request(5, [bytes(32), b"\x01" * 32], SIGNED), add_checkpoint_request(0, [], SIGNED)]


@fuzz_settings(300)
@given(st.one_of(mutated(_REQUESTS), st.binary(max_size=48)))
@example(b"old " + b"9" * 5000 + b"\n\n")
def test_add_checkpoint_request_parses_or_is_refused(body: bytes) -> None:
    """parse_add_checkpoint_request: a parsed request is rebuilt byte for byte by add_checkpoint_request."""
    result = outcome(parse_add_checkpoint_request, body)
    if ok(result):
        old, proof, signed = result[1]
        rebuilt = outcome(add_checkpoint_request, old, proof, signed)
        if ok(rebuilt):
            assert rebuilt[1] == body


@fuzz_settings(100)
@given(st.integers(0, (1 << 63) - 1), st.lists(st.binary(min_size=32, max_size=32), max_size=5),
       st.binary(max_size=30).map(lambda b: b + b"\n"))
def test_add_checkpoint_request_round_trip(old: int, proof: list[bytes], signed: bytes) -> None:
    """parse(add_checkpoint_request(...)) gives back what was put in."""
    if old == 0:
        proof = []
    assert parse_add_checkpoint_request(add_checkpoint_request(old, proof, signed)) == (old, proof, signed)


_LINES = "".join(cosign(CHECKPOINT.text(), w, 1_800_000_000).line() for w in WITNESSES)


@fuzz_settings(300)
@given(st.one_of(mutated_text([_LINES]), st.text(max_size=40)), st.booleans())
@example("\ud800\n", False)  # a lone surrogate cannot be encoded as UTF-8
@example("\n" + _LINES, True)  # a blank line first: the note's text would swallow it
def test_cosignature_lines_parse_or_are_refused(lines: str, as_bytes: bool) -> None:
    """parse_signature_lines, given text or bytes: parsed lines write back to exactly what was read."""
    arg = lines.encode("utf-8", "surrogateescape") if as_bytes else lines
    result = outcome(parse_signature_lines, CHECKPOINT.text(), arg)
    if ok(result):
        written = "".join(s.line() for s in result[1])
        assert written.encode("utf-8") == (arg if isinstance(arg, bytes) else arg.encode("utf-8"))


_POLICY_TEXT = WitnessPolicy(tuple(witness_verifier(w) for w in WITNESSES), 2,
                             {"w1.example": "https://w1.example/prefix", "w3.example": "http://w3.example"}).to_text()
_POLICY_JSON = {"witnesses": [{"vkey": witness_verifier(WITNESSES[0]).to_string(), "url": "https://w1.example"},
                              witness_verifier(WITNESSES[1]).to_string()], "quorum": 1}


def _same(a: WitnessPolicy, b: WitnessPolicy) -> bool:
    return a == b and a.urls == b.urls


@fuzz_settings(300)
@given(st.one_of(mutated_text([_POLICY_TEXT, _POLICY_TEXT + "# comment\n\n"]),
                 json_bytes([_POLICY_JSON]).map(lambda b: b.decode("utf-8", "surrogateescape")), st.text(max_size=40)))
@example('{"witnesses":' + "[" * 100_000 + "]" * 100_000 + "}")  # nested past the recursion limit
@example(_POLICY_TEXT.replace("https://w1.example/prefix", "https://w1.example/#x"))  # '#' starts a comment
@example(_POLICY_TEXT.replace("https://w1.example/prefix", "https://"))  # no host
def test_witness_policy_parses_or_is_refused(text: str) -> None:
    """WitnessPolicy.from_text: a parsed policy writes a trust file that parses back to the same policy."""
    result = outcome(WitnessPolicy.from_text, text)
    if ok(result):
        policy: WitnessPolicy = result[1]
        assert _same(WitnessPolicy.from_text(policy.to_text()), policy)
