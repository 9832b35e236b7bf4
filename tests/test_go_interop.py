"""Interoperability with Go's reference implementation (golang.org/x/mod/sumdb/{note,tlog}).

A small Go program, ``tests/go/interop/main.go``, is built in GOPATH mode against
Debian's golang-golang-x-mod-dev (no modules, no network). A real redline log
(SQLite store, fresh Ed25519 key) is grown in batches whose checkpoints land on
and around powers of two; its verifier key, signed checkpoints, leaves, the
stored hashes from the SQLite ``hash_tiles`` table and redline's inclusion and
consistency proofs go to a JSON file, and the Go program checks them with
``note.Open``, ``tlog.TreeHash``, ``tlog.StoredHashes``, ``tlog.CheckRecord``
and ``tlog.CheckTree``. Tampered copies must make it fail, naming the check.

Go and the x/mod sources come from ``make system-deps``. Without them this test
skips on a developer's machine, naming what is missing, and fails in CI (where
the environment variable ``CI`` is set): CI must run it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from redline.crypto.keys import SigningKey
from redline.log import merkle
from redline.log.service import Log
from redline.log.sqlite import SqliteStore

GO_SOURCE = Path(__file__).resolve().parent / "go" / "interop" / "main.go"
GOCODE = Path("/usr/share/gocode")
XMOD_PACKAGES = ("golang.org/x/mod/sumdb/note", "golang.org/x/mod/sumdb/tlog")
IMPORT_PATH = "redlineinterop"
ORIGIN = "redline.example/interop"

#: Sizes at which the test log signs a checkpoint: one batch ends at each.
CHECKPOINT_SIZES = (1, 2, 3, 7, 8, 9, 255, 256, 257, 1000)


# --- toolchain policy -------------------------------------------------------


def missing_toolchain(which: Callable[[str], str | None] = shutil.which, gocode: Path = GOCODE) -> list[str]:
    """What the Go interop test lacks on this machine, each with the Debian package that provides it."""
    missing = []
    if which("go") is None:
        missing.append("the 'go' command (golang-go)")
    for pkg in XMOD_PACKAGES:
        if not (gocode / "src" / pkg).is_dir():
            missing.append(f"{gocode / 'src' / pkg} (golang-golang-x-mod-dev)")
    return missing


def require_toolchain(missing: list[str], env: Mapping[str, str] = os.environ) -> None:
    """Fail in CI, skip elsewhere, when anything is missing."""
    if not missing:
        return
    what = "; ".join(missing)
    if env.get("CI"):
        pytest.fail(f"Go interop test cannot run in CI: {what} missing: "
                    "CI must install golang-go golang-golang-x-mod-dev (make system-deps)", pytrace=False)
    pytest.skip(f"Go interop test: {what} missing: run 'make system-deps' "
                "(installs golang-go golang-golang-x-mod-dev)")


def test_toolchain_policy_fails_in_ci_and_skips_elsewhere(tmp_path: Path) -> None:
    """The skip policy itself: CI fails, a developer's machine skips, both naming what is missing."""
    missing = missing_toolchain(which=lambda _: None, gocode=tmp_path)
    assert missing == [
        "the 'go' command (golang-go)",
        f"{tmp_path}/src/golang.org/x/mod/sumdb/note (golang-golang-x-mod-dev)",
        f"{tmp_path}/src/golang.org/x/mod/sumdb/tlog (golang-golang-x-mod-dev)",
    ]
    with pytest.raises(pytest.fail.Exception, match=r"'go' command \(golang-go\).*sumdb/tlog"):
        require_toolchain(missing, env={"CI": "true"})
    skip_message = (r"sumdb/tlog \(golang-golang-x-mod-dev\) missing: "
                    r"run 'make system-deps' \(installs golang-go golang-golang-x-mod-dev\)")
    with pytest.raises(pytest.skip.Exception, match=skip_message):
        require_toolchain(missing, env={})
    require_toolchain([], env={"CI": "true"})  # nothing missing: neither fails nor skips
    (tmp_path / "src/golang.org/x/mod/sumdb/note").mkdir(parents=True)
    assert missing_toolchain(which=lambda _: "/usr/bin/go", gocode=tmp_path) == [
        f"{tmp_path}/src/golang.org/x/mod/sumdb/tlog (golang-golang-x-mod-dev)",
    ]


# --- building and running the Go program --------------------------------------


@pytest.fixture(scope="session")
def go_checker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go checker binary, built once per session (per xdist worker) in GOPATH mode."""
    require_toolchain(missing_toolchain())
    base = tmp_path_factory.mktemp("go-interop")
    pkg_dir = base / "gopath" / "src" / IMPORT_PATH
    pkg_dir.mkdir(parents=True)
    shutil.copyfile(GO_SOURCE, pkg_dir / "main.go")
    binary = base / "redlineinterop"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(base),
        "GO111MODULE": "off",
        "GOPATH": f"{base / 'gopath'}:{GOCODE}",
        "GOCACHE": str(base / "gocache"),
        "GOFLAGS": "",
        "GOPROXY": "off",
        "GOENV": "off",
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
    }
    res = subprocess.run(["go", "build", "-o", str(binary), IMPORT_PATH], cwd=base / "gopath", env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"go build failed:\n{res.stdout}\n{res.stderr}"
    return binary


@dataclass
class Run:
    returncode: int
    lines: list[str]
    stderr: str

    def ok(self) -> list[str]:
        return [line for line in self.lines if line.startswith("ok ")]

    def failed(self) -> list[str]:
        return [line for line in self.lines if line.startswith("FAIL ")]


def run_checker(binary: Path, case: dict, path: Path) -> Run:
    path.write_text(json.dumps(case))
    res = subprocess.run([str(binary), str(path)], capture_output=True, text=True, timeout=120)
    return Run(res.returncode, res.stdout.splitlines(), res.stderr)


# --- the redline log and the JSON case ----------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def make_entries(n: int) -> list[bytes]:
    """Entries of varied lengths, including empty and the largest allowed."""
    out = []
    for i in range(n):
        if i == 5:
            out.append(b"")
        elif i == 300:
            out.append(bytes(range(256)) * 255 + bytes(range(247)))  # 65,527 bytes, the maximum
        else:
            out.append(f"entry {i} ".encode() * (1 + i % 7))
    return out


@pytest.fixture(scope="module")
def log_case(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A redline log grown in batches to each of CHECKPOINT_SIZES, as the Go checker's JSON input."""
    directory = tmp_path_factory.mktemp("interop-log")
    db = directory / "log.db"
    key = SigningKey.generate(ORIGIN)
    ticks = iter(range(1_700_000_000_000, 1_800_000_000_000, 1_234))
    log = Log.create(SqliteStore(db, create=True), key, clock=lambda: next(ticks))
    entries = make_entries(CHECKPOINT_SIZES[-1])
    done = 0
    for size in CHECKPOINT_SIZES:
        appended = log.append(entries[done:size])
        assert appended.first_index == done
        done = size
    assert log.size == CHECKPOINT_SIZES[-1]
    sizes = log.checkpoint_sizes()
    assert sizes == [0, *CHECKPOINT_SIZES]

    leaves = [log.leaf(i) for i in range(log.size)]
    with sqlite3.connect(db) as conn:  # the hash tiles as redline wrote them, not through the store API
        packed = b"".join(bytes(blob) for _, blob in conn.execute("SELECT tile, hashes FROM hash_tiles ORDER BY tile"))
    stored = [{"index": k, "hash": b64(packed[32 * k : 32 * k + 32])} for k in range(len(packed) // 32)]

    inclusion = [{"index": i, "treeSize": n, "proof": [b64(h) for h in log.prove_inclusion(i, n)]}
                 for n in CHECKPOINT_SIZES for i in range(n)]
    consistency = [{"old": m, "new": n, "proof": [b64(h) for h in log.prove_consistency(m, n)]}
                   for n in CHECKPOINT_SIZES for m in CHECKPOINT_SIZES if m <= n]

    big = [(1 << 20) - 1, 1 << 20, (1 << 32) + 12345, (1 << 40) - 1, (1 << 45) + 7]
    stored_hash_index = [{"level": lv, "n": n, "want": merkle.stored_hash_index(lv, n)}
                         for lv in range(13) for n in [*range(34), *big] if lv + n.bit_length() <= 58]
    counts = [*range(600), *big, (1 << 61) - 1, 1 << 61]
    stored_hash_count = [{"n": n, "want": merkle.stored_hash_count(n)} for n in counts]
    split_indexes = [*range(2100), *(merkle.stored_hash_count(n) + d for n in big for d in (-1, 0, 1))]
    split = []
    for index in split_indexes:
        level, n = merkle.level_and_index(index)
        split.append({"index": index, "wantLevel": level, "wantN": n})

    return {
        "verifierKey": log.verifier.to_string(),
        "checkpoints": [{"size": s, "note": b64(log.checkpoint(s))} for s in sizes],
        "leaves": [b64(leaf) for leaf in leaves],
        "storedHashes": stored,
        "inclusion": inclusion,
        "consistency": consistency,
        "storedHashIndex": stored_hash_index,
        "storedHashCount": stored_hash_count,
        "splitStoredHashIndex": split,
    }


def expected_ok_lines(case: dict) -> int:
    """One "ok" line per check: signature and root per checkpoint, one for the stored hashes, one per item."""
    return (2 * len(case["checkpoints"]) + 1 + len(case["inclusion"]) + len(case["consistency"])
            + len(case["storedHashIndex"]) + len(case["storedHashCount"]) + len(case["splitStoredHashIndex"]))


# --- the checks -------------------------------------------------------------------


def test_go_verifies_redline_log(go_checker: Path, log_case: dict, tmp_path: Path) -> None:
    """Go's note.Open, tlog.TreeHash, StoredHashes, CheckRecord and CheckTree accept everything redline wrote."""
    run = run_checker(go_checker, log_case, tmp_path / "case.json")
    assert run.returncode == 0, "\n".join(run.failed()[:20]) + run.stderr
    assert run.failed() == []
    assert len(run.ok()) == expected_ok_lines(log_case)
    assert len(run.ok()) == len(run.lines)
    ok = set(run.ok())
    for size in (0, *CHECKPOINT_SIZES):
        assert any(line.startswith(f"ok checkpoint-signature size={size} ") for line in ok)
        assert any(line.startswith(f"ok checkpoint-root size={size} ") for line in ok)
    count = merkle.stored_hash_count(CHECKPOINT_SIZES[-1])
    assert f"ok stored-hashes leaves={CHECKPOINT_SIZES[-1]} count={count}" in ok
    assert len(log_case["storedHashes"]) == count
    assert "ok inclusion index=0 size=1000 hashes=10" in ok
    assert "ok inclusion index=999 size=1000 hashes=8" in ok
    assert "ok inclusion index=256 size=257 hashes=1" in ok
    assert "ok consistency old=256 new=257 hashes=1" in ok
    assert "ok consistency old=1000 new=1000 hashes=0" in ok


def flip_bit(data: bytes, byte: int, bit: int = 0) -> bytes:
    b = bytearray(data)
    b[byte] ^= 1 << bit
    return bytes(b)


def flip_b64(text: str, byte: int, bit: int = 0) -> str:
    return b64(flip_bit(base64.b64decode(text), byte, bit))


def tamper_inclusion(case: dict) -> None:
    proof = next(p for p in case["inclusion"] if p["index"] == 200 and p["treeSize"] == 257)
    proof["proof"][3] = flip_b64(proof["proof"][3], 17, 5)


def tamper_consistency(case: dict) -> None:
    proof = next(p for p in case["consistency"] if p["old"] == 7 and p["new"] == 1000)
    proof["proof"][-1] = flip_b64(proof["proof"][-1], 0, 7)


def tamper_signature(case: dict) -> None:
    cp = case["checkpoints"][-1]
    note = base64.b64decode(cp["note"])
    text, sig_line = note.rsplit(b"\n\n", 1)
    prefix, sig = sig_line.rstrip(b"\n").rsplit(b" ", 1)
    sig = base64.b64encode(flip_bit(base64.b64decode(sig), 4 + 40, 2))  # in the signature, past the key ID
    cp["note"] = b64(text + b"\n\n" + prefix + b" " + sig + b"\n")


def tamper_stored_hash(case: dict) -> None:
    row = case["storedHashes"][777]
    row["hash"] = flip_b64(row["hash"], 31, 0)


def tamper_leaf(case: dict) -> None:
    case["leaves"][600] = flip_b64(case["leaves"][600], 9, 1)  # in the entry, past the 8-byte time


def tamper_index(case: dict) -> None:
    case["storedHashIndex"][40]["want"] += 1
    case["storedHashCount"][300]["want"] -= 1
    case["splitStoredHashIndex"][1000]["wantLevel"] += 1


# Each tampering and the FAIL lines it must produce (exactly these prefixes, in this order) ...
EXACT = {
    "inclusion-proof": (tamper_inclusion, ["FAIL inclusion index=200 size=257: tlog.CheckRecord"]),
    "consistency-proof": (tamper_consistency, ["FAIL consistency old=7 new=1000: tlog.CheckTree"]),
    "checkpoint-signature": (tamper_signature, ["FAIL checkpoint-signature size=1000: note.Open"]),
    "stored-hash": (tamper_stored_hash, ["FAIL stored-hashes leaves=1000: stored hash 777 "]),
    "index-arithmetic": (tamper_index, ["FAIL stored-hash-index ", "FAIL stored-hash-count n=300:",
                                        "FAIL split-stored-hash-index index=1000:"]),
}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_go_names_the_tampered_check(go_checker: Path, log_case: dict, tmp_path: Path, name: str) -> None:
    """One flipped bit fails exactly the check it touches, with a non-zero exit."""
    tamper, want = EXACT[name]
    case = json.loads(json.dumps(log_case))
    tamper(case)
    run = run_checker(go_checker, case, tmp_path / "tampered.json")
    assert run.returncode == 1, run.stderr
    failed = run.failed()
    assert len(failed) == len(want), failed
    for line, prefix in zip(failed, want):
        assert line.startswith(prefix), (line, prefix)
    assert run.lines[-1] == f"{len(want)} check(s) failed"
    assert len(run.ok()) == expected_ok_lines(log_case) - len(want)


def test_go_rejects_a_tampered_leaf(go_checker: Path, log_case: dict, tmp_path: Path) -> None:
    """A changed leaf breaks the stored hashes, every later root and that leaf's inclusion proofs."""
    case = json.loads(json.dumps(log_case))
    tamper_leaf(case)
    run = run_checker(go_checker, case, tmp_path / "tampered.json")
    assert run.returncode == 1, run.stderr
    failed = run.failed()
    assert [f.split(":")[0] for f in failed] == [
        "FAIL stored-hashes leaves=1000",
        "FAIL checkpoint-root size=1000",
        "FAIL inclusion index=600 size=1000",
    ]
    assert failed[0].startswith("FAIL stored-hashes leaves=1000: stored hash "
                                f"{merkle.stored_hash_index(0, 600)} (level 0, n 600) ")
    assert sum(line.startswith("ok checkpoint-root ") for line in run.ok()) == len(CHECKPOINT_SIZES)


def test_go_reports_a_flipped_proof_and_a_flipped_signature_together(go_checker: Path, log_case: dict,
                                                                     tmp_path: Path) -> None:
    """The brief's tampered file: a flipped proof bit and a flipped signature bit, both reported."""
    case = json.loads(json.dumps(log_case))
    tamper_inclusion(case)
    tamper_signature(case)
    run = run_checker(go_checker, case, tmp_path / "tampered.json")
    assert run.returncode != 0
    assert sorted(f.split(":")[0] for f in run.failed()) == [
        "FAIL checkpoint-signature size=1000",
        "FAIL inclusion index=200 size=257",
    ]
