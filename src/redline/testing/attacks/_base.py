"""Shared plumbing of the attack classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from redline.statements.runs import TranscriptCommitments
from redline.testing.attacks import Declared, SpoofedRun
from redline.testing.attacks._forge import Content, checkpoint_steps, make_config, new_content, write_transcript
from redline.transcript.tinygpt import TrainConfig


class BaseAttack:
    """Holds the name and description; subclasses implement ``forge``."""

    name = ""
    description = ""

    def run(self, workdir: str | Path, *, seed: int = 0, steps: int = 60, checkpoint_every: int = 10,
            **params: Any) -> SpoofedRun:
        """Write the spoofed transcript to ``workdir / self.name`` and describe it."""
        out = Path(workdir) / self.name
        cfg = make_config(seed, steps, **params.pop("config", {}))
        ckpts = checkpoint_steps(steps, checkpoint_every)
        content = new_content(cfg, checkpoint_every)
        info = self.forge(cfg, ckpts, content, **params)
        manifest = write_transcript(out, content)
        before: TranscriptCommitments | None = manifest.commitments
        tampered = info.pop("tampered", None)
        if tampered is not None:
            tampered = tampered(out, manifest)
        else:
            before = None
        flop = None if content.flop_per_step is None else content.flop_per_step * steps
        declared = Declared(steps=steps, flop=flop, model=dict(cfg.model_kwargs()),
                            parameter_count=content.parameter_count, tokens=manifest.tokens)
        return SpoofedRun(attack=self.name, transcript_dir=out, declared=declared,
                          faked_segments=sorted(info.pop("faked")), segment_starts=ckpts[:-1],
                          cost=float(info.pop("cost")), commitments_before=before, tampered_file=tampered,
                          details=info)

    def forge(self, cfg: TrainConfig, ckpts: list[int], content: Content, **params: Any) -> dict[str, Any]:
        """Fill ``content``; return ``faked`` (segment indexes), ``cost`` and any details."""
        raise NotImplementedError


def default_fake_from(ckpts: list[int], fake_from: int | None) -> int:
    """The first faked segment: ``fake_from``, or the middle segment by default (earlier ones are honest)."""
    n = len(ckpts) - 1
    k = n // 2 if fake_from is None else fake_from
    if not 0 <= k < n:
        raise ValueError(f"fake_from must be a segment index in 0..{n - 1}, not {k}")
    return k


class Honest(BaseAttack):
    """No attack: an honest run written by the same forger (the baseline every attack is compared with)."""

    name = "honest"
    description = "an honest run, written the way the attacks write theirs"

    def forge(self, cfg: TrainConfig, ckpts: list[int], content: Content, **params: Any) -> dict[str, Any]:
        from redline.testing.attacks._forge import Run, honest_prefix

        if params:
            raise TypeError(f"unexpected parameters {sorted(params)}")
        run = Run(cfg)
        content.checkpoints[0] = run.capture(0)
        honest_prefix(run, cfg.steps, ckpts, content)
        return {"faked": [], "cost": 1.0}
