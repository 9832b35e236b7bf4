"""``redline serve``: the public log service (C2SP tlog-tiles, submissions, JSON state) over HTTP.

Needs the ``server`` extra (FastAPI, uvicorn). See ``docs/guides/operator.md``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import click

from redline.errors import MalformedInput, RedlineError


@click.command("serve")
@click.argument("logdir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Loopback by default: put a TLS reverse proxy in front for the public.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="TCP port to listen on (0: any free port).")
@click.option("--batch-ms", type=click.FloatRange(0, 1000), default=5.0, show_default=True,
              help="How long the batcher waits after a submission for more to share its append (milliseconds).")
@click.option("--queue", "queue_size", type=click.IntRange(1, 1_000_000), default=1024, show_default=True,
              help="Most submissions waiting for the log; beyond it clients get 429 with Retry-After.")
@click.option("--max-batch", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="Most submissions integrated in one append (one transaction, one checkpoint).")
@click.option("--witness-policy", "witness_policy", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A witness trust file (docs/guides/witness.md) with each witness's URL: every new checkpoint is "
                   "sent to the witnesses and /checkpoint serves it once the policy's quorum has cosigned it.")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              default="info", show_default=True, help="uvicorn's log level.")
@click.option("--no-cache", is_flag=True,
              help="Replay the whole log at start instead of starting from the latest state snapshot in "
                   "LOGDIR/snapshots.")
@click.option("--snapshot-check", "snapshot_check", type=click.FloatRange(0, 86_400), default=60.0,
              show_default=True,
              help="Every so many seconds, when enough entries came after the newest state snapshot "
                   "(--snapshot-every), "
                   "save a new one in a background process ('redline log snapshot'), so that a restart after a crash "
                   "replays only what came after it. 0: only when the server stops.")
@click.option("--snapshot-every", "snapshot_every", type=click.IntRange(1, 1 << 40), default=None,
              help="Entries after the newest snapshot that make a new one due (default: 10,000 or 5% of the log, "
                   "whichever is more).")
def serve(logdir: Path, host: str, port: int, batch_ms: float, queue_size: int, max_batch: int,
          witness_policy: Path | None, log_level: str, no_cache: bool, snapshot_check: float,
          snapshot_every: int | None) -> None:
    """Serve the log in LOGDIR over HTTP: tiles, checkpoint, submissions and the replayed state.

    The store is verified first: in full when you have no verification record of it
    (see 'redline log verify'), else the latest checkpoint and what was appended
    since; a store that does not verify, or holds less than your record, is refused.
    The state starts from the latest state snapshot in LOGDIR/snapshots (--no-cache:
    replayed from the start). While it runs, a background process saves a new
    snapshot whenever enough entries came after the newest (--snapshot-check,
    --snapshot-every); when the server stops it saves its verification record and,
    after many new entries, a snapshot of its own state. Submissions need
    LOGDIR/log.key.
    """
    try:
        import uvicorn

        from redline.server import create_app
    except ImportError as exc:  # pragma: no cover - the server extra is missing
        raise MalformedInput(f"'redline serve' needs the server extra (pip install 'redline[server]'): {exc}") from exc
    from redline.cli.logdir import open_registry

    registry = open_registry(logdir, use_cache=not no_cache)  # a store that fails is refused here
    publish = None
    if witness_policy is not None:
        from redline.cli.inputs import check_regular
        from redline.log.witness import MAX_POLICY_BYTES, WitnessPolicy, make_publisher

        check_regular(witness_policy, MAX_POLICY_BYTES, f"witness policy {witness_policy}")
        policy = WitnessPolicy.load(witness_policy)
        publish = make_publisher(None, policy, registry.log)
    app = create_app(registry, batch_ms=batch_ms, queue_size=queue_size, max_batch=max_batch,
                     **({"publish": publish} if publish is not None else {}))
    click.echo(f"serving log {registry.log.origin} ({registry.log.size} entries) on http://{host}:{port}",
               err=True)
    snapshots = Snapshotter(logdir, lambda: registry.log.size, snapshot_check, snapshot_every)
    try:
        snapshots.start()
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug")
    finally:
        snapshots.stop()
        # what this process verified and derived saves the next start its work (both are caches: never required)
        from redline.cli.logdir import save_verification
        from redline.statecache import save_if_worth

        with registry.lock():
            try:
                save_verification(logdir, registry.log)
                save_if_worth(registry.log, logdir, registry.state)
            except RedlineError as exc:
                click.echo(f"note: the caches of {logdir} were not saved: {exc}", err=True)


class Snapshotter:
    """Saves LOGDIR's state snapshot every so often while a server runs.

    Every ``interval`` seconds, when a snapshot is due (``redline.statecache.due``: ``every`` entries, by default
    10,000 or 5% of the log, came after the newest snapshot file), it starts ``redline log snapshot LOGDIR`` as a
    separate process at low priority, one at a time. That process reads the log and the newest snapshot itself,
    verifies what it replays and writes the new snapshot atomically: it shares no memory and no lock with the
    server, so the server neither waits for it nor can be harmed by it, and a crash of either leaves the old
    snapshot or the new one. ``stop`` interrupts a run still going (it removes its unfinished file as it exits).
    """

    def __init__(self, logdir: Path, size: Callable[[], int], interval: float, every: int | None = None,
                 command: Sequence[str] | None = None) -> None:
        self.logdir, self.size, self.interval, self.every = logdir, size, interval, every
        self.command = list(command) if command is not None else [
            # -P: the installed redline only, never a ``redline`` package in the working directory (which
            # ``-m`` would put first on the path: code anyone who can write there would run with the cache key)
            sys.executable, "-P", "-m", "redline", "log", "snapshot", str(logdir), "--workers", "1", "--low-priority"]
        self.started = 0  # processes started, for the curious (and the tests)
        self.failures: list[int] = []  # the exit codes of those that failed
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # over _proc and failures: the loop, stop() and onlookers (busy) read them
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="redline-snapshots", daemon=True)

    def start(self) -> None:
        """Begin checking (nothing when the interval is 0)."""
        if self.interval > 0:
            self._thread.start()

    def _loop(self) -> None:
        from redline.statecache import due

        while not self._stop.wait(self.interval):
            if self._running():
                continue
            try:
                if due(self.logdir, self.size(), self.every):
                    proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
                    with self._lock:
                        self._proc = proc
                    self.started += 1
            except OSError as exc:  # the helper cannot be started: the server goes on; its stop saves as before
                click.echo(f"note: a state snapshot could not be started: {exc}", err=True)

    @property
    def busy(self) -> bool:
        """Whether a snapshot is being made now."""
        return self._running()

    def _running(self) -> bool:
        with self._lock:
            proc = self._proc
            if proc is None:
                return False
            code = proc.poll()
            if code is None:
                return True
            if code != 0:
                self.failures.append(code)
            self._proc = None
            return False

    def stop(self, timeout: float = 30.0) -> None:
        """Stop checking; interrupt a snapshot still being made and wait for it (killed after ``timeout`` s)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT if os.name == "posix" else signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._running()
