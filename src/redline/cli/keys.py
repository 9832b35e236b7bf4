"""``redline key``: create and show Ed25519 keys in the C2SP note forms."""

from __future__ import annotations

from pathlib import Path

import click

from redline.cli.inputs import read_prefix, signing_key
from redline.crypto.keys import SigningKey, load_verifier_key, save_signing_key


@click.group()
def key() -> None:
    """Create and inspect Ed25519 signing keys."""


@key.command("new")
@click.argument("name")
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Private key file to write (mode 0600); the verifier key goes to OUT.pub.")
@click.option("--force", is_flag=True, help="Replace an existing key file (atomically).")
def key_new(name: str, out: Path, force: bool) -> None:
    """Generate a key named NAME (a log's origin, or a party's name).

    Writes the Go sumdb private-key form to OUT with mode 0600, never
    overwriting an existing file unless --force, and prints the C2SP verifier key.
    """
    k = SigningKey.generate(name)
    pub = save_signing_key(k, out, overwrite=force)
    click.echo(k.verifier().to_string())
    click.echo(f"wrote {out} (private, 0600) and {pub}", err=True)


@key.command("show")
@click.argument("path_or_key")
def key_show(path_or_key: str) -> None:
    """Show the verifier key, key ID and fingerprint of a key file or verifier-key string.

    PATH_OR_KEY is a private key file, a .pub file, or a verifier key string.
    """
    p = Path(path_or_key)
    if read_prefix(p, 12) == b"PRIVATE+KEY+":
        vk = signing_key(p).verifier()
    else:
        vk = load_verifier_key(path_or_key)
    click.echo(f"name:        {vk.name}")
    click.echo(f"verifier:    {vk.to_string()}")
    click.echo(f"key ID:      {vk.key_id.hex()}")
    click.echo(f"fingerprint: {vk.fingerprint}")
