"""The ``redline`` command: one group per concern, errors turned into messages and exit codes.

Exit codes: 0 success; 1 other redline error; 2 usage error; 3 bad signature;
4 log error; 5 invalid proof; 6 inconsistent log; 7 not authorized; 8 verification inconclusive;
9 witness error (a witness refused, or the witness policy was not met); 10 the log's clock runs ahead of its
witnesses; 11 split view (the log signed two histories); 12 rollback (the log serves less than it signed);
65 malformed input; 66 key problem; 73 refusing to overwrite; 74 I/O error.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from redline import __version__
from redline.errors import RedlineError


def one_line(message: str) -> str:
    """``message`` on one line: a parser's multi-line report (YAML's, say) joined with ``; ``."""
    return "; ".join(part.strip() for part in message.splitlines() if part.strip()) if "\n" in message else message


#: Each subcommand and where it lives: a module is imported only when its command runs (or help lists them all),
#: so ``redline state`` does not pay for importing the server, the indicators or the compute tools.
SUBCOMMANDS = {
    "key": "redline.cli.keys:key", "log": "redline.cli.log:log", "party": "redline.cli.registry:party",
    "policy": "redline.cli.registry:policy", "submit": "redline.cli.registry:submit", "sign": "redline.cli.sign:sign",
    "state": "redline.cli.registry:state", "run": "redline.cli.run:run", "compute": "redline.cli.compute:compute",
    "indicators": "redline.cli.indicators:indicators", "demo": "redline.cli.demo:demo",
    "verify": "redline.cli.verify:verify", "witness": "redline.cli.witness:witness", "serve": "redline.cli.serve:serve",
    "monitor": "redline.cli.monitor:monitor",
}


class RedlineGroup(click.Group):
    """A click group that reports ``RedlineError`` as one line on stderr with the error's exit code, and imports
    each subcommand's module when that command is first asked for (``commands`` lists them all, importing all)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._lazy: dict[str, str] = {}
        super().__init__(*args, **kwargs)

    @property  # type: ignore[override]
    def commands(self) -> dict[str, click.Command]:
        for name in list(self._lazy):
            self._load(name)
        return self._commands

    @commands.setter
    def commands(self, value: dict[str, click.Command]) -> None:
        self._commands = value

    def add_lazy(self, name: str, where: str) -> None:
        """Register ``where`` (``module:attribute``) as the subcommand ``name``, imported when first needed."""
        self._lazy[name] = where

    def _load(self, name: str) -> click.Command | None:
        where = self._lazy.pop(name, None)
        if where is not None:
            module, attr = where.split(":")
            self._commands[name] = getattr(importlib.import_module(module), attr)
        return self._commands.get(name)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.commands)

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


for _name, _where in SUBCOMMANDS.items():
    cli.add_lazy(_name, _where)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="redline")


if __name__ == "__main__":
    sys.exit(main())
