"""``python -m redline``: the ``redline`` command (what ``redline serve`` starts its helpers with)."""

from redline.cli.main import main

main()
