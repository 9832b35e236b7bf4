#!/usr/bin/env python3
"""Vendor the dashboard's npm assets (``make assets``): uPlot into the package, axe-core into tests/vendor.

Each package is fetched with ``npm pack NAME@VERSION`` (the npm registry, at build time only), its tarball
checked against the integrity npm reports, and the files below copied with the package's licence. A
``MANIFEST.json`` beside them records the package, version, tarball integrity and every file's SHA-256; the
files are committed, so ``pip install`` needs no npm. Run with nothing to do when the vendored files already
match the pins (no npm needed then); ``--check`` only verifies them; ``--force`` fetches again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: (npm package, pinned version, destination, {file in the package: vendored name}).
PINS: list[tuple[str, str, Path, dict[str, str]]] = [
    ("uplot", "1.6.32", ROOT / "src/redline/server/static/vendor",
     {"dist/uPlot.iife.min.js": "uPlot.iife.min.js", "dist/uPlot.min.css": "uPlot.min.css",
      "LICENSE": "uPlot.LICENSE"}),
    ("axe-core", "4.14.1", ROOT / "tests/vendor",
     {"axe.min.js": "axe.min.js", "LICENSE": "axe.LICENSE"}),
]
MANIFEST = "MANIFEST.json"


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def problems(package: str, version: str, dest: Path, files: dict[str, str]) -> list[str]:
    """What is wrong with the vendored copy of ``package@version`` in ``dest`` (empty: it matches its pin)."""
    path = dest / MANIFEST
    if not path.is_file():
        return [f"{path} is missing"]
    entry = json.loads(path.read_text()).get(package)
    if entry is None or entry.get("version") != version:
        return [f"{path} does not pin {package}@{version}"]
    out = []
    for name in files.values():
        f = dest / name
        if not f.is_file():
            out.append(f"{f} is missing")
        elif sha256(f) != entry["files"].get(name):
            out.append(f"{f} does not match its recorded SHA-256")
    return out


def fetch(package: str, version: str, dest: Path, files: dict[str, str]) -> None:
    """``npm pack`` the package, copy its files into ``dest`` and record them in the manifest."""
    npm = shutil.which("npm")
    if npm is None:
        sys.exit(f"npm is needed to vendor {package}@{version} (Debian: apt-get install npm)")
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([npm, "pack", "--json", f"{package}@{version}"], cwd=tmp, check=True,
                             capture_output=True, text=True).stdout
        info = json.loads(out)[0]
        tarball = Path(tmp) / info["filename"]
        integrity = info["integrity"]
        algo, _, want = integrity.partition("-")
        import base64

        got = base64.b64encode(hashlib.new(algo, tarball.read_bytes()).digest()).decode()
        if got != want:
            sys.exit(f"{package}@{version}: the tarball does not match its integrity {integrity}")
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as tar:
            for inside, name in files.items():
                member = tar.extractfile(f"package/{inside}")
                if member is None:
                    sys.exit(f"{package}@{version} has no {inside}")
                (dest / name).write_bytes(member.read())
    path = dest / MANIFEST
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    manifest[package] = {"version": version, "integrity": integrity,
                         "files": {name: sha256(dest / name) for name in files.values()}}
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(f"vendored {package}@{version} into {dest.relative_to(ROOT)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check the vendored files against their pins")
    ap.add_argument("--force", action="store_true", help="fetch every package again")
    args = ap.parse_args()
    bad = False
    for package, version, dest, files in PINS:
        wrong = problems(package, version, dest, files)
        if args.check:
            for w in wrong:
                print(w, file=sys.stderr)
            bad = bad or bool(wrong)
        elif wrong or args.force:
            fetch(package, version, dest, files)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
