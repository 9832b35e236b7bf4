"""Compute under-declaration, four ways the former ``compute`` check (one step counted × the step count, ±30 %)
let through, each played on a real log and verified as ``redline verify run --log`` does.

a. ``under-declared-flop``: an honest run whose ``RunProgress``/``RunFinish`` declare ``factor`` (0.701) × the
   counted FLOP — inside the former ±30 %. The verifier holds a counted figure to 1 %.
b. ``uncounted-matmuls``: a model whose two large matmuls are written as broadcast multiply + sum, which
   FlopCounterMode counts as zero; the lab declares what the counter sees (``redline run declare`` itself),
   a few per cent of the work. Caught by the 6·N·D floor (count < 0.5 × 6·N·D).
c. ``small-first-batches``: the registered tiny GPT on a data source whose batch at the first step of the run
   and of every segment holds one sequence and every other batch ``batch_size``; the lab declares the first
   step's count × the steps (the recorder's ``flop.per_step`` × steps, what a single counted step gives).
   Caught: every batch shape is counted and the declared figure is far below the sum.
d. ``under-declared-tokens``: an honest tiny-GPT run whose step records claim ``token_share`` of each batch's
   tokens from step 2 on (the recorder's own ``tokens=`` argument), declared with ``redline run declare`` (so
   its 6·N·D figure uses the claimed tokens). Caught: the verifier recounts every batch's tokens.

Each is a story (:class:`~redline.testing.attacks._binding.BindingAttack`): ``redline run start``, the lab's
declarations (``redline run declare``, or its own statements through the statement builders where it lies
in them), the auditor's verification with the log's RunStart and declaration, its report submitted. Stopped
when the verdict is ``fail`` because the ``compute`` check failed (not inconclusive) for the stated reason.

**Test-only code (b, c).** The multiply-and-sum model and the variable-shape data source are not installed
entry points (registering them would mean building and installing a distribution). For the length of the story
:func:`lab_factories` makes ``redline.transcript.factories.load`` — and the reference
``redline.transcript.replay`` took of it at import, which ``init`` and segment replays use — return them for
their two names (``lab-gpt``, ``lab-windows``, pinned as ``lab-models 1.0``) and the real loader for every other
name, as ``tests/test_verify_compute.py`` does. The ``code`` check still runs (it calls ``load``) and passes for
them as for an installed, pinned distribution; everything else is the real verifier, in this process
(``workers=1``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from redline.testing.attacks import BindingRun, Declared, attack
from redline.testing.attacks._binding import BindingAttack

H64 = "0" * 64
#: The tiny GPT of these stories: small enough that a story takes well under a second.
MICRO_MODEL: dict[str, Any] = {"seq_len": 16, "d_model": 16, "n_layer": 1, "n_head": 2}


class LabWindows:
    """Random token windows (batch ``p`` fixed by ``(seed, p)``); with ``small_every``, the batches at positions
    ``0, small_every, 2·small_every, …`` hold ``small_size`` sequences and the others ``batch_size``."""

    def __init__(self, seed: int, batch_size: int = 4, seq_len: int = 8, vocab: int = 16, small_every: int = 0,
                 small_size: int = 1) -> None:
        self.seed, self.batch_size, self.seq_len, self.vocab = seed, batch_size, seq_len, vocab
        self.small_every, self.small_size = small_every, small_size

    def batch(self, position: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + position)
        size = self.small_size if self.small_every and position % self.small_every == 0 else self.batch_size
        ids = torch.randint(0, self.vocab, (size, self.seq_len + 1), generator=g)
        return {"input_ids": ids[:, :-1].contiguous(), "labels": ids[:, 1:].contiguous()}


class MulSumLM(nn.Module):
    """Looks like a small language model; its two large matmuls are broadcast multiplies and sums, which
    FlopCounterMode counts as zero. Only the small LM head is a real matmul."""

    def __init__(self, vocab: int = 16, d: int = 32, hidden: int = 256) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.w_in = nn.Parameter(torch.randn(d, hidden) * 0.05)
        self.w_out = nn.Parameter(torch.randn(hidden, d) * 0.05)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.emb(idx)
        h = (x.unsqueeze(-1) * self.w_in).sum(-2)  # x @ w_in, unseen by the counter
        x = x + (torch.relu(h).unsqueeze(-1) * self.w_out).sum(-2)  # relu(h) @ w_out, unseen
        return self.head(x)


#: The test-only factories by (field, name).
LAB_FACTORIES: dict[tuple[str, str], Any] = {("model_factory", "lab-gpt"): MulSumLM,
                                             ("data_source", "lab-windows"): LabWindows}


@contextmanager
def lab_factories(table: dict[tuple[str, str], Any] | None = None) -> Iterator[None]:
    """Resolve the test-only factories by name for the duration (see the module docstring)."""
    from redline.transcript import factories, replay

    table = LAB_FACTORIES if table is None else table
    real = factories.load
    saved = replay.load

    def load(field: str, ref: Any) -> Any:
        return table[(field, ref.name)] if (field, ref.name) in table else real(field, ref)

    factories.load = load
    replay.load = load
    try:
        yield
    finally:
        factories.load = real
        replay.load = saved


def lab_ref(name: str, **kwargs: Any) -> Any:
    """A pin for a test-only factory (resolved by :func:`lab_factories`)."""
    from redline.transcript.format import FactoryRef

    return FactoryRef(name=name, distribution="lab-models", version="1.0", files_digest=H64, kwargs=kwargs)


def windows_ref(**kwargs: Any) -> Any:
    """The pin of the test-only data source ``lab-windows`` with ``kwargs``."""
    from redline.transcript.format import DataSourceRef

    return DataSourceRef(name="lab-windows", distribution="lab-models", version="1.0", files_digest=H64, seed=0,
                         kwargs=kwargs)


def record(path: Path, model_factory: Callable[..., nn.Module], model_ref: Any, source: Any, source_ref: Any, *,
           steps: int, every: int, run_id: str, party: str = "lab-a", seed: int = 0,
           tokens: Callable[[int, int], int] | None = None) -> Any:
    """Record ``steps`` steps of the declared update rule (AdamW, next-token loss, clip 1.0) with the transcript
    ``Recorder``, the model built after seeding with ``seed``; ``tokens(step, true_count)`` is what the step
    record claims (default the truth). Returns the loaded transcript."""
    import numpy as np

    from redline.transcript import factories
    from redline.transcript.format import Declaration, Init
    from redline.transcript.recorder import Recorder
    from redline.transcript.tinygpt import train_step
    from redline.transcript.torchstate import RngState, batch_tensors, count_tokens
    from redline.transcript.transcript import load_transcript

    saved = RngState.capture()
    try:
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)
        model = model_factory(**model_ref.kwargs)
        kwargs = {"lr": 1e-3, "betas": [0.9, 0.95], "weight_decay": 0.01}
        optimizer = torch.optim.AdamW(model.parameters(), **kwargs)
        decl = Declaration(model_factory=model_ref, optimizer=factories.pin("optimizer", "adamw", **kwargs),
                           data_source=source_ref, train_step=factories.pin("train_step", "tinygpt-next-token"),
                           max_grad_norm=1.0)
        with Recorder(path, model, optimizer, party=party, run_id=run_id, init=Init(kind="fresh", seed=seed),
                      declaration=decl, checkpoint_every=every, count_flop=True, durable=False) as rec:
            for position in range(steps):
                batch = source.batch(position)
                optimizer.zero_grad(set_to_none=True)
                loss = train_step(model, batch)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                true = count_tokens(batch_tensors(batch))
                claim = true if tokens is None else tokens(position + 1, true)
                rec.step(batch, loss, position=position, tokens=claim)
    finally:
        saved.restore()
    return load_transcript(path)


class ComputeStory(BindingAttack):
    """A lab records a run, declares it (``redline run start``, then its declarations) and an auditor verifies
    it; subclasses record the run (:meth:`record_run`) and say how the lab declares it (:meth:`declare`)."""

    #: What the ``compute`` check's detail must say for the move to count as stopped.
    expect = ""
    #: Resolve the test-only factories during the story.
    lab_code = False
    #: Parameters of :meth:`declared_flop` (the others go to :meth:`record_run`).
    declare_params: tuple[str, ...] = ()
    #: The attacking move, in words (``{how}``: how the declared FLOP was made).
    move = "declare {how}"

    def play(self, scenario: Any, out: Path, *, seed: int, steps: int, checkpoint_every: int,
             **params: Any) -> BindingRun:
        party, run_id = "lab-a", f"{self.name}-{seed}"
        model_name = f"{party}-{run_id}"
        transcript = out / "transcript"
        how_params = {k: params.pop(k) for k in list(params) if k in self.declare_params}
        with lab_factories() if self.lab_code else nullcontext():
            t = self.record_run(transcript, seed=seed, steps=steps, every=checkpoint_every, run_id=run_id, **params)
            from redline.verify.compute import compute_check

            counted = compute_check(t, None, probe=False)  # the verifier's count, for the record
            truth = float(counted.counted_flop) if counted.counted_flop is not None else None
            declared_total, how = self.declared_flop(t, truth, **how_params)
            start = scenario.run_start(party, transcript, model_name, declared_total)
            if start.refused:
                raise RuntimeError(f"the lab's RunStart was refused: {start}")
            answers = [start, *self.declare(scenario, t, party, run_id, model_name, declared_total, truth)]
            if any(a.refused for a in answers):
                raise RuntimeError(f"a declaration was refused: {[str(a) for a in answers if a.refused]}")
            audit = scenario.audit(party, run_id, transcript)
        answers.append(audit.report)
        since = audit.report.indexes[0] if audit.report and not audit.report.refused else scenario.size
        violations = [v for v in scenario.violations(since) if v.party == party]
        m = t.manifest
        compute = audit.check("compute")
        found = audit.result.compute
        details = {"log": scenario.dir, "declared_flop": declared_total, "declared_as": how,
                   "counted_flop": found.counted_flop if found is not None else None,
                   "declared_share": (declared_total / found.counted_flop
                                      if found is not None and found.counted_flop else None),
                   "six_nd_share": found.six_nd_share if found is not None else None,
                   "token_total": found.token_total if found is not None else None, "claimed_tokens": m.tokens,
                   "shapes": [str(s.shape) for s in found.shapes] if found is not None else [],
                   "verdict": audit.verdict, "compute_detail": compute.detail, "faked": self.description}
        real = self.real_share(found, declared_total, m)
        details["real_over_declared"] = real
        result = BindingRun(attack=self.name, transcript_dir=transcript,
                            declared=Declared(steps=t.step_count, flop=declared_total,
                                              model=dict(m.declaration.model_factory.kwargs),
                                              parameter_count=m.parameter_count, tokens=m.tokens),
                            faked_segments=[], segment_starts=[s.start.step for s in t.segments()],
                            cost=real, details=details)
        result.answers, result.audits, result.violations = answers, {"verify the run": audit}, violations
        result.stopped = {self.move.format(how=how): audit.verdict == "fail" and not compute.passed
                          and not compute.inconclusive and self.expect in compute.detail}
        return result

    def record_run(self, path: Path, *, seed: int, steps: int, every: int, run_id: str, **params: Any) -> Any:
        raise NotImplementedError

    def real_share(self, found: Any, declared: float, manifest: Any) -> float:
        """The attacker's real compute over what it declared (the ``cost`` of the story): the count over the
        declared figure by default."""
        if found is None or not found.counted_flop or not declared:
            return 1.0
        return float(found.counted_flop) / declared

    def declared_flop(self, t: Any, counted: float | None, **params: Any) -> tuple[float, str]:
        """The FLOP the lab declares (and plans in its RunStart), and how it got it, in words."""
        return float(counted or 0.0), "the counted FLOP"

    def declare(self, scenario: Any, t: Any, party: str, run_id: str, model_name: str, total: float,
                counted: float | None) -> list[Any]:
        """The lab's declarations; by default ``redline run declare --submit`` itself."""
        return [scenario.run_declare(party, t.path, run_id, model_name)]


def own_declarations(scenario: Any, t: Any, party: str, run_id: str, total: float) -> list[Any]:
    """The RunProgress (at the last checkpoint) and RunFinish ``redline run declare`` would sign, with the lab's
    own FLOP figure ``total`` in place of the count (through the statement builders)."""
    from redline.statements.runs import FlopEstimates, RunFinish, RunProgress

    m, n = t.manifest, t.step_count
    six_nd = 6.0 * m.parameter_count * m.tokens
    progress = scenario.say(f"{party}: RunProgress at step {n} ({total:.4g} FLOP)", party, RunProgress,
                            run_id=run_id, step=n, flop_so_far=total, commitments=t.commitments_at(n),
                            spec_digest=t.spec_digest, as_of=m.finished_at)
    finish = scenario.say(f"{party}: RunFinish ({total:.4g} FLOP counted)", party, RunFinish, run_id=run_id,
                          total_flop=total, flop_estimates=FlopEstimates(counted=total, six_nd=six_nd),
                          estimates_disagree=abs(six_nd - total) > 0.5 * total,
                          final_model_digest={"sha256": t.final_model_digest()}, commitments=t.commitments,
                          spec_digest=t.spec_digest, manifest_digest=m.digest(), finished_at=m.finished_at)
    return [progress, finish]


def _tinygpt_ref(model: dict[str, Any] | None) -> Any:
    from redline.transcript import factories

    return factories.pin("model_factory", "tinygpt", **{**MICRO_MODEL, **(model or {}), "dropout": 0.1})


@attack
class UnderDeclaredFlop(ComputeStory):
    name = "under-declared-flop"
    description = "an honest run declared at 0.701 × its counted FLOP (inside the former ±30 %)"
    expect = "RunFinish.flop_estimates.counted"

    declare_params = ("factor",)

    def record_run(self, path: Path, *, seed: int, steps: int, every: int, run_id: str,
                   model: dict[str, Any] | None = None) -> Any:
        return _honest_tinygpt(path, seed=seed, steps=steps, every=every, run_id=run_id, model=model)

    def declared_flop(self, t: Any, counted: float | None, *, factor: float = 0.701) -> tuple[float, str]:
        if not 0 < factor < 0.99:
            raise ValueError("factor must lie in (0, 0.99): an under-declaration")
        return factor * float(counted or 0.0), f"{factor:g} × the counted FLOP"

    def declare(self, scenario: Any, t: Any, party: str, run_id: str, model_name: str, total: float,
                counted: float | None) -> list[Any]:
        return own_declarations(scenario, t, party, run_id, total)


def _honest_tinygpt(path: Path, *, seed: int, steps: int, every: int, run_id: str, model: dict[str, Any] | None,
                    tokens: Callable[[int, int], int] | None = None) -> Any:
    """The registered tiny GPT on its registered data source (2 sequences a batch), recorded honestly (but for
    the ``tokens`` the step records claim)."""
    from redline.transcript import factories
    from redline.transcript.tinygpt import make_model, text_batches

    ref = _tinygpt_ref(model)
    seq_len = ref.kwargs["seq_len"]
    src = factories.pin("data_source", "tinygpt-text", seed=seed, batch_size=2, seq_len=seq_len)
    return record(path, make_model, ref, text_batches(seed, 2, seq_len), src, steps=steps, every=every,
                  run_id=run_id, seed=seed, tokens=tokens)


@attack
class UncountedMatmuls(ComputeStory):
    name = "uncounted-matmuls"
    description = "matmuls written as broadcast multiply + sum (counted as zero), declared as the counter sees them"
    expect = "× 6·N·D"
    lab_code = True
    move = "declare what FlopCounterMode sees of a model whose matmuls are multiply + sum"

    def real_share(self, found: Any, declared: float, manifest: Any) -> float:
        """6·N·D (what the model's matmul-class work is at least worth) over the declared FLOP."""
        return float(found.six_nd) / declared if found is not None and found.six_nd and declared else 1.0

    def record_run(self, path: Path, *, seed: int, steps: int, every: int, run_id: str) -> Any:
        return record(path, MulSumLM, lab_ref("lab-gpt"), LabWindows(0), windows_ref(), steps=steps, every=every,
                      run_id=run_id, seed=seed)


@attack
class SmallFirstBatches(ComputeStory):
    name = "small-first-batches"
    description = ("one-sequence batches at the first step of the run and of every segment, full ones elsewhere, "
                   "declared as the first step's count × the steps")
    expect = "RunFinish.flop_estimates.counted"
    lab_code = True

    def record_run(self, path: Path, *, seed: int, steps: int, every: int, run_id: str, batch_size: int = 16,
                   model: dict[str, Any] | None = None) -> Any:
        from redline.transcript.tinygpt import make_model

        ref = _tinygpt_ref(model)
        kwargs = {"batch_size": batch_size, "seq_len": ref.kwargs["seq_len"], "vocab": 256, "small_every": every}
        return record(path, make_model, ref, LabWindows(0, **kwargs), windows_ref(**kwargs), steps=steps,
                      every=every, run_id=run_id, seed=seed)

    def declared_flop(self, t: Any, counted: float | None) -> tuple[float, str]:
        return float(t.manifest.flop.per_step * t.step_count), "the first step's count × the steps"

    def declare(self, scenario: Any, t: Any, party: str, run_id: str, model_name: str, total: float,
                counted: float | None) -> list[Any]:
        return own_declarations(scenario, t, party, run_id, total)


@attack
class UnderDeclaredTokens(ComputeStory):
    name = "under-declared-tokens"
    description = ("step records claiming a quarter of each batch's tokens from step 2 on, declared by redline run "
                   "declare")
    expect = "tokens, but its batch holds"
    move = "declare step records that claim a quarter of each batch's tokens"

    def real_share(self, found: Any, declared: float, manifest: Any) -> float:
        """The tokens trained on over the tokens claimed (the claimed 6·N·D's understatement)."""
        return float(found.token_total) / manifest.tokens if found is not None and manifest.tokens else 1.0

    def record_run(self, path: Path, *, seed: int, steps: int, every: int, run_id: str, token_share: float = 0.25,
                   model: dict[str, Any] | None = None) -> Any:
        if not 0 < token_share < 1:
            raise ValueError("token_share must lie in (0, 1)")
        return _honest_tinygpt(path, seed=seed, steps=steps, every=every, run_id=run_id, model=model,
                               tokens=lambda step, n: n if step < 2 else max(1, int(n * token_share)))


__all__ = [
    "LAB_FACTORIES",
    "ComputeStory",
    "LabWindows",
    "MulSumLM",
    "SmallFirstBatches",
    "UncountedMatmuls",
    "UnderDeclaredFlop",
    "UnderDeclaredTokens",
    "lab_factories",
    "lab_ref",
    "own_declarations",
    "record",
    "windows_ref",
]
