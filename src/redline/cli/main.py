"""The ``redline`` command: one group per concern, errors turned into messages and exit codes.

Exit codes: 0 success; 1 other redline error; 2 usage error; 3 bad signature;
4 log error; 5 invalid proof; 6 inconsistent log; 7 not authorized; 8 verification inconclusive;
9 witness error (a witness refused, or the witness policy was not met); 10 the log's clock runs ahead of its
witnesses; 11 split view (the log signed two histories); 12 rollback (the log serves less than it signed);
65 malformed input; 66 key problem; 73 refusing to overwrite; 74 I/O error.
"""

from __future__ import annotations

import sys

import click

from redline import __version__
from redline.errors import RedlineError


def one_line(message: str) -> str:
    """``message`` on one line: a parser's multi-line report (YAML's, say) joined with ``; ``."""
    return "; ".join(part.strip() for part in message.splitlines() if part.strip()) if "\n" in message else message


class RedlineGroup(click.Group):
    """A click group that reports ``RedlineError`` as one line on stderr with the error's exit code."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except RedlineError as exc:
            click.echo(f"error: {one_line(str(exc))}", err=True)
            ctx.exit(exc.exit_code)
        except OSError as exc:
            click.echo(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
            ctx.exit(74)  # EX_IOERR


@click.group(cls=RedlineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="redline")
def cli() -> None:
    """redline: a verifiable, coordinated pause of frontier AI development.

    Every fact is a signed statement on a witnessed transparency log; the state
    of the world is replayed from the log.
    """


def _register() -> None:
    from redline.cli.compute import compute
    from redline.cli.demo import demo
    from redline.cli.indicators import indicators
    from redline.cli.keys import key
    from redline.cli.log import log
    from redline.cli.monitor import monitor
    from redline.cli.registry import party, policy, state, submit
    from redline.cli.run import run
    from redline.cli.serve import serve
    from redline.cli.sign import sign
    from redline.cli.verify import verify
    from redline.cli.witness import witness

    for command in (key, log, party, policy, submit, sign, state, run, compute, indicators, demo, verify, witness):
        cli.add_command(command)
    cli.add_command(serve)
    cli.add_command(monitor)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="redline")


if __name__ == "__main__":
    sys.exit(main())
