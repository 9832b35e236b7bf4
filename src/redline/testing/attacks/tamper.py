"""Tampering after commitment: an honest transcript whose checkpoint blob or step record changes afterwards.

The manifest and roots are those of the honest run (``commitments_before``);
then one file is altered in place. ``load_transcript`` must refuse the result
with a ``MalformedInput`` whose message starts with the altered file's path
(``tampered_file``).

``target``:

- ``"checkpoint"``: one byte of a checkpoint blob's tensor data is flipped (the
  checkpoint at ``step``, default the middle one);
- ``"steps"``: step record ``step``'s loss is changed, the line kept canonical;
- ``"data"``: data record ``step`` commits to another batch digest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from redline.crypto.canonical import canonical_json
from redline.testing.attacks import attack
from redline.testing.attacks._base import BaseAttack
from redline.testing.attacks._forge import Content, Run, honest_prefix
from redline.transcript.format import BLOBS_DIR, DATA_FILE, STEPS_FILE, Manifest
from redline.transcript.tinygpt import TrainConfig


def _rewrite_line(path: Path, step: int, change: Any) -> None:
    lines = path.read_bytes().split(b"\n")
    record = json.loads(lines[step - 1])
    change(record)
    lines[step - 1] = canonical_json(record)
    path.write_bytes(b"\n".join(lines))


@attack
class TamperAfterCommitment(BaseAttack):
    name = "tamper"
    description = "a checkpoint blob or a step/data record altered after the manifest and roots were computed"

    def forge(self, cfg: TrainConfig, ckpts: list[int], content: Content, *, target: str = "checkpoint",
              step: int | None = None) -> dict[str, Any]:
        if target not in ("checkpoint", "steps", "data"):
            raise ValueError("target must be 'checkpoint', 'steps' or 'data'")
        run = Run(cfg)
        content.checkpoints[0] = run.capture(0)
        honest_prefix(run, cfg.steps, ckpts, content)
        if step is None:
            step = ckpts[len(ckpts) // 2] if target == "checkpoint" else cfg.steps // 2 + 1
        if target == "checkpoint":
            if step not in ckpts:
                raise ValueError(f"no checkpoint at step {step}")
            i = ckpts.index(step)
            faked = [j for j in (i - 1, i) if 0 <= j < len(ckpts) - 1]
        else:
            if not 1 <= step <= cfg.steps:
                raise ValueError(f"no step {step}")
            faked = [max(j for j, c in enumerate(ckpts[:-1]) if c < step)]

        def tamper(out: Path, manifest: Manifest) -> Path:
            if target == "checkpoint":
                sha = next(e.digest["sha256"] for e in manifest.checkpoints if e.step == step)
                path = out / BLOBS_DIR / "sha256" / sha[:2] / sha[2:]
                data = bytearray(path.read_bytes())
                data[-1] ^= 0x01  # the last byte is tensor data (the header comes first)
                path.write_bytes(bytes(data))
            elif target == "steps":
                path = out / STEPS_FILE

                def bump(r: dict[str, Any]) -> None:
                    r["loss"] = float(r["loss"]) * 0.5

                _rewrite_line(path, step, bump)
            else:
                path = out / DATA_FILE

                def swap(r: dict[str, Any]) -> None:
                    r["batch"]["sha256"] = "0" * 64

                _rewrite_line(path, step, swap)
            return path

        return {"faked": faked, "cost": 1.0, "tampered": tamper, "target": target, "step": step}
