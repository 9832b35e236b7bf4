"""Go's own tlog code reads a redline log over HTTP from ``redline serve``'s tiles, for EVERY checkpointed size.

``tests/go/tilereader/main.go`` (GOPATH mode, Debian's golang-golang-x-mod-dev, as in
``test_go_interop.py``) fetches ``/checkpoint`` from a real uvicorn on 127.0.0.1, verifies it with
``note.Open``, takes the earlier signed checkpoints from a JSON file, and for each one builds a
``tlog.TileHashReader`` over HTTP GETs of ``/tile/<L>/<N>[.p/<W>]``: ``tlog.TreeHash`` must give the
checkpoint's root, inclusion proofs (leaves from ``/tile/entries/...``) and consistency proofs with the
previous checkpoint must check. Skips without Go on a developer's machine; fails in CI.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers.loopback import LoopbackServer
from scenario_kit import Clock
from test_go_interop import GOCODE, missing_toolchain, require_toolchain

from redline.crypto.keys import SigningKey
from redline.log.service import Log
from redline.log.sqlite import SqliteStore
from redline.registry import Registry
from redline.server import create_app

GO_SOURCE = Path(__file__).resolve().parent / "go" / "tilereader" / "main.go"
IMPORT_PATH = "redlinetilereader"
ORIGIN = "redline.example/tiles-http"
#: Batches end here: partial tiles at levels 0 and 1, and a level-2 right edge (65,536 + 513 entries).
SIZES = (1, 2, 3, 7, 8, 9, 255, 256, 257, 511, 512, 513, 1000, 65_536, 65_537, 66_049)


@pytest.fixture(scope="module")
def tilereader(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_toolchain(missing_toolchain())
    base = tmp_path_factory.mktemp("go-tilereader")
    pkg = base / "gopath" / "src" / IMPORT_PATH
    pkg.mkdir(parents=True)
    shutil.copyfile(GO_SOURCE, pkg / "main.go")
    binary = base / IMPORT_PATH
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(base), "GO111MODULE": "off",
           "GOPATH": f"{base / 'gopath'}:{GOCODE}", "GOCACHE": str(base / "gocache"), "GOFLAGS": "",
           "GOPROXY": "off", "GOENV": "off", "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}
    res = subprocess.run(["go", "build", "-o", str(binary), IMPORT_PATH], cwd=base / "gopath", env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, f"go build failed:\n{res.stdout}\n{res.stderr}"
    return binary


@pytest.fixture(scope="module")
def served_log(tmp_path_factory: pytest.TempPathFactory) -> Log:
    path = tmp_path_factory.mktemp("tiles-http") / "log.db"
    lg = Log.create(SqliteStore(path, create=True), SigningKey.generate(ORIGIN), clock=Clock())
    n = 0
    for size in SIZES:
        lg.append([b"entry %d" % i for i in range(n, size)])
        n = size
    return lg


def history(lg: Log, path: Path) -> Path:
    notes = [base64.b64encode(lg.checkpoint(s)).decode() for s in lg.checkpoint_sizes()[:-1]]
    path.write_text(json.dumps({"checkpoints": notes}))
    return path


def run(binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # no proxy: the reader talks to 127.0.0.1 only
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NO_PROXY": "*"}
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=300, env=env, check=False)


def test_go_verifies_every_checkpointed_size_over_http(tilereader: Path, served_log: Log, tmp_path: Path) -> None:
    with LoopbackServer(create_app(Registry(served_log))) as srv:
        res = run(tilereader, srv.url, served_log.verifier.to_string(), str(history(served_log, tmp_path / "h.json")))
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert not [line for line in lines if line.startswith("FAIL")]
    for size in SIZES:
        assert f"ok tree-hash size={size}" in lines
        assert f"ok inclusion size={size} index={size - 1}" in lines
    assert "ok consistency old=65537 new=66049" in lines
    assert lines[-1] == f"checked {len(SIZES) + 1} checkpoints"  # and size 0


def test_go_refuses_the_checkpoint_under_another_key(tilereader: Path, served_log: Log) -> None:
    other = SigningKey.generate(ORIGIN).verifier().to_string()
    with LoopbackServer(create_app(Registry(served_log))) as srv:
        res = run(tilereader, srv.url, other)
    assert res.returncode == 1
    assert "FAIL checkpoint 0: note.Open" in res.stdout
