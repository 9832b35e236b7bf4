"""Running a child process that file modes stop, also as root (CI runs as root).

Root reads a mode-000 file and writes into a mode-555 directory all the same: it holds ``CAP_DAC_OVERRIDE``
and ``CAP_DAC_READ_SEARCH``. A child started through ``setpriv`` without them (in its inheritable and bounding
sets) stays uid 0, so it can use everything the test made, but modes now stop it as they stop any user.
"""

from __future__ import annotations

import os
import shutil

import pytest

DAC_CAPS = "-dac_override,-dac_read_search"


def unprivileged(argv: list[str]) -> list[str]:
    """``argv`` to run so that file modes apply to it: unchanged for a user other than root; as root, under
    ``setpriv`` without the capabilities that bypass them (the test fails in CI, and skips elsewhere, without
    ``setpriv``)."""
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        what = "setpriv (util-linux) is missing: as root, a child needs it to drop CAP_DAC_OVERRIDE"
        if os.environ.get("CI"):
            pytest.fail(what, pytrace=False)
        pytest.skip(what)
    return [setpriv, f"--inh-caps={DAC_CAPS}", f"--bounding-set={DAC_CAPS}", *argv]
