"""``redline serve``: the public log service (C2SP tlog-tiles, submissions, JSON state) over HTTP.

Needs the ``server`` extra (FastAPI, uvicorn). See ``docs/guides/operator.md``.
"""

from __future__ import annotations

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
def serve(logdir: Path, host: str, port: int, batch_ms: float, queue_size: int, max_batch: int,
          witness_policy: Path | None, log_level: str, no_cache: bool) -> None:
    """Serve the log in LOGDIR over HTTP: tiles, checkpoint, submissions and the replayed state.

    The store is verified first: in full when you have no verification record of it
    (see 'redline log verify'), else the latest checkpoint and what was appended
    since; a store that does not verify, or holds less than your record, is refused.
    The state starts from the latest state snapshot in LOGDIR/snapshots (--no-cache:
    replayed from the start); when the server stops it saves its record and, after
    many new entries, a new snapshot. Submissions need LOGDIR/log.key.
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
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug")
    finally:
        # what this process verified and derived saves the next start its work (both are caches: never required)
        from redline.cli.logdir import save_verification
        from redline.statecache import save_if_worth

        with registry.lock():
            try:
                save_verification(logdir, registry.log)
                save_if_worth(registry.log, logdir, registry.state)
            except RedlineError as exc:
                click.echo(f"note: the caches of {logdir} were not saved: {exc}", err=True)
