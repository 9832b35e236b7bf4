"""A throwaway PostgreSQL cluster for the tests: ``initdb`` and ``pg_ctl`` in a temporary folder, listening
only on a Unix socket (no TCP), with trust authentication for its one superuser.

PostgreSQL refuses to run as root: as root, the server runs as the ``postgres`` system user (or ``nobody``)
through ``runuser``. Without PostgreSQL's binaries or psycopg the tests that need it skip on a developer's
machine, naming what is missing, and fail in CI (the environment variable ``CI`` is set): CI must run them
(``make system-deps`` installs Debian's ``postgresql``).

Import the ``pg`` fixture in a test module (``from pg_fixture import pg``); ``pg.new_url()`` gives a URL
for a fresh, empty schema of the cluster's database (one log per schema).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import quote

import pytest

DBNAME = "redline"
SUPERUSER = "redline"


def find_bindir() -> Path | None:
    """The newest PostgreSQL ``bin`` folder with ``initdb`` and ``pg_ctl`` (Debian layout, or on PATH)."""
    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                         key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0,
                         reverse=True):
        return Path(initdb).parent
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def missing_postgres() -> list[str]:
    """What the PostgreSQL tests need and this machine lacks."""
    missing = []
    if find_bindir() is None:
        missing.append("PostgreSQL server binaries (initdb, pg_ctl: Debian's postgresql package)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing.append("psycopg (pip install 'redline[postgres]')")
    return missing


def require_postgres(missing: list[str], env: Mapping[str, str] = os.environ) -> None:
    """Fail in CI, skip elsewhere, when anything is missing."""
    if not missing:
        return
    what = "; ".join(missing)
    if env.get("CI"):
        pytest.fail(f"PostgreSQL tests cannot run in CI: {what} missing: CI must install postgresql "
                    "(make system-deps)", pytrace=False)
    pytest.skip(f"PostgreSQL tests: {what} missing: run 'make system-deps' (as root) and make install")


class PgCluster:
    """A running throwaway cluster: its folder, socket folder and a URL maker."""

    def __init__(self, bindir: Path, root: Path, user: str | None) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.sock = root / "sock"
        self.user = user  # the system user the server runs as (None: this process's)
        self._schemas = 0

    def _cmd(self, *args: str) -> list[str]:
        return (["runuser", "-u", self.user, "--"] if self.user else []) + list(args)

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL tool from the cluster's bin folder as the server's user."""
        return subprocess.run(self._cmd(str(self.bindir / args[0]), *args[1:]), capture_output=True, text=True,
                              check=check, timeout=timeout, cwd=self.root)

    def pg_ctl(self, action: str, *extra: str, timeout: float = 60) -> None:
        """``pg_ctl ACTION`` for this cluster (start/stop/restart wait until done)."""
        opts = f"-c listen_addresses='' -k {self.sock} -c fsync=on -c synchronous_commit=on -c max_connections=100"
        args = ["pg_ctl", action, "-D", str(self.data), "-w", "-t", str(int(timeout))]
        if action in ("start", "restart"):
            args += ["-o", opts, "-l", str(self.root / "server.log")]
        if action in ("stop", "restart"):
            args += ["-m", "fast"]
        self.run(*args, *extra, timeout=timeout + 10)

    @property
    def base_url(self) -> str:
        """The URL of the cluster's database (its public schema)."""
        return f"postgresql:///{DBNAME}?host={quote(str(self.sock), safe='/')}&user={SUPERUSER}"

    def url(self, schema: str) -> str:
        """The URL of ``schema`` in the cluster's database."""
        return f"{self.base_url}&options={quote(f'-csearch_path={schema}')}"

    def new_url(self, prefix: str = "log") -> str:
        """A fresh, empty schema and its URL (one log per schema)."""
        import psycopg

        self._schemas += 1
        schema = f"{prefix}_{os.getpid()}_{self._schemas}"
        with psycopg.connect(self.base_url, autocommit=True) as c:
            c.execute(f'CREATE SCHEMA "{schema}"')
        return self.url(schema)


def _server_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and neither the 'postgres' nor the 'nobody' user exists")


def start_cluster() -> PgCluster:
    """initdb and start a cluster in a fresh temporary folder."""
    bindir = find_bindir()
    assert bindir is not None
    user = _server_user()
    root = Path(tempfile.mkdtemp(prefix="redline-pg-"))
    cluster = PgCluster(bindir, root, user)
    cluster.sock.mkdir()
    if user:
        entry = pwd.getpwnam(user)
        for p in (root, cluster.sock):
            os.chown(p, entry.pw_uid, entry.pw_gid)
    cluster.run("initdb", "-D", str(cluster.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                "--no-locale", "--no-sync", timeout=120)
    cluster.pg_ctl("start")
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(f"postgresql:///postgres?host={cluster.sock}&user={SUPERUSER}",
                                 autocommit=True) as c:
                c.execute(f"CREATE DATABASE {DBNAME}")
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    return cluster


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    """A throwaway PostgreSQL cluster for this test session (Unix socket only); stopped and removed after."""
    require_postgres(missing_postgres())
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        try:
            cluster.pg_ctl("stop")
        except (subprocess.SubprocessError, OSError):
            pass
        shutil.rmtree(cluster.root, ignore_errors=True)
