#!/usr/bin/env python3
"""Benchmark: replay throughput over a mixed log with every signature verified, one core against both.

Baseline and redline run in the same process on the same entries, ratio last:

* baseline: ``redline.engine.replay`` — the sequential engine on one core, every Ed25519
  signature verified inline;
* redline: ``redline.engine.parallel.replay_parallel`` with ``--workers`` processes (default
  2, one per core here) doing the stateless work (envelope parsing, Ed25519 verification of
  every signature by a candidate key, statement parsing and validation), and the same
  sequential ``apply`` deciding everything that depends on the state;
* the Ed25519 bound: the same signatures the replay verifies, each verified with the same call
  (``VerifierKey.verify``: libsodium's ``crypto_sign_open``), spread over ``--workers``
  processes started beforehand, nothing else: no replay can go faster on those cores.

The log (``--n`` entries, default 100,000) is generated deterministically from ``--seed``:
the genesis, 20 admitted parties (12 labs, 5 auditors, 3 regulators), the
``coordinated-pause`` policy, three registered base models, compute inventories and
commitments, then a realistic mix of run starts (most bound to a run spec, a fifth of them
fine-tunes from a finished run's weights or a registered base), progress and finishes,
indicators, evaluation results (a lab evaluates its own runs' final weights), verification
reports (mostly on a RunFinish), review submissions of final weights, findings and decisions,
releases of final weights, compute usage reports, key rotations, and pauses (a run over 10^25
FLOP starts one: acknowledgements, a resume proposal and approvals end it). About 0.2% of
entries are bad on purpose (an altered payload under a valid signature, a replayed statement,
garbage bytes) and must be rejected.
Every statement is signed (deterministic keys); generation takes a while, so the entries
are cached in ``bench/out/`` keyed by the parameters.

The two final states must have the same digest (the benchmark aborts otherwise). The goals
(issue #17): at least 15,000 statements/s for the parallel replay, and at least 85% of the
Ed25519 bound measured in the same run. Besides wall time, each row gives the CPU time per
statement (this process, and the worker processes) or per signature: on a shared machine the
wall-clock rates move with the load (printed), the CPU cost and the share of the bound much less.

Run:  .venv/bin/python bench/replay.py                (100,000 statements, about a minute)
      .venv/bin/python bench/replay.py --quick        (10,000 statements)
      .venv/bin/python bench/replay.py --repeat 3     (best of three runs per side, alternating)
"""

from __future__ import annotations

import argparse
import base64
import gc
import hashlib
import json
import multiprocessing
import os
import platform
import random
import resource
import struct
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from redline.crypto.dsse import Envelope, pae
from redline.crypto.keys import SigningKey, VerifierKey
from redline.engine import Entry, replay
from redline.engine.parallel import DEFAULT_CHUNK, candidate_keys, replay_parallel
from redline.engine.replay import MAX_ENTRY_BYTES
from redline.errors import BadSignature
from redline.policy import load_pack
from redline.statements import (
    Admission,
    BaseModelRegistration,
    Check,
    ChipCount,
    Cluster,
    Commitment,
    ComputeInventory,
    ComputeUsageReport,
    CountQuorum,
    Declaration,
    Environment,
    EvaluationResult,
    FactoryRef,
    FlopEstimates,
    Genesis,
    Indicator,
    Init,
    KeyRotation,
    PauseAcknowledgement,
    PolicyPublication,
    Predicate,
    Release,
    ResumeApproval,
    ResumeProposal,
    ReviewDecision,
    ReviewFinding,
    ReviewSubmission,
    RunFinish,
    RunProgress,
    RunSpec,
    RunStart,
    RunUsage,
    TranscriptCommitments,
    VerificationReport,
    sign_predicate,
)

GOAL_PER_S = 15_000
#: The parallel replay's rate as a share of the Ed25519 bound measured in the same run.
GOAL_OF_BOUND = 0.85
#: The benchmark log's origin: every statement names it.
BENCH_ORIGIN = "bench.redline.example/log"
GENERATOR_VERSION = 3  # 2: run specs, base models, weights bound by digest (statements v2)
OUT = Path(__file__).resolve().parent / "out"
T0_MS = 1_800_000_000_000
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
LABS = [f"lab-{c}" for c in "abcdefghijkl"]
AUDITORS = [f"auditor-{i}" for i in range(1, 6)]
REGULATORS = ["eu-ai-office", "us-caisi", "uk-aisi"]
JURISDICTIONS = ["EU", "US", "UK", "JP", "CA", "FR", "DE", "KR"]
CHIPS = ["H100 SXM", "H200", "B200", "A100", "MI300X", "TPU v5p"]


def say(msg: str = "") -> None:
    print(msg, flush=True)


# --- the log generator ------------------------------------------------------------


def _key(name: str, generation: int = 0) -> SigningKey:
    return SigningKey(name, hashlib.sha256(f"bench-replay/{name}/{generation}".encode()).digest())


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _hex(rng: random.Random) -> str:
    return rng.randbytes(32).hex()


class _Generator:
    """A simulated world that writes a valid, realistic log (plus a few bad entries on purpose)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.rng = random.Random(seed)
        self.entries: list[Entry] = []
        self.now = T0_MS
        self.keys: dict[str, SigningKey] = {}
        self.key_gen: dict[str, int] = {}
        self.seq: dict[str, int] = {}
        self.runs: dict[str, list[dict[str, Any]]] = {lab: [] for lab in LABS}  # open runs per lab
        self.finished: list[dict[str, Any]] = []  # finished runs (any lab)
        self.bases: list[str] = []  # registered base model digests
        self.base_flop: dict[str, float] = {}  # their training compute
        self.run_counter = 0
        self.needs_review: dict[str, str] = {}  # model -> lab (models over 10^24 FLOP of lineage)
        self.reviews: list[dict[str, Any]] = []  # open review submissions
        self.releasable: list[dict[str, Any]] = []  # finished runs cleared or below the review line
        self.committed: list[str] = []
        self.pause: dict[str, Any] | None = None
        self.pauses_left = max(1, n // 40_000)
        self.policy_digest = ""
        self.last_signed = b""

    # -- plumbing

    def add(self, data: bytes) -> None:
        self.now += self.rng.randint(1_000, 15_000)
        self.entries.append(Entry(len(self.entries), self.now, data))

    def statement(self, party: str, cls: type[Predicate], **fields: Any) -> bytes:
        self.seq[party] = self.seq.get(party, 0) + 1
        pred = cls(party=party, seq=self.seq[party], log=BENCH_ORIGIN, **fields)
        data = sign_predicate(pred, self.keys[party]).to_json()
        self.add(data)
        self.last_signed = data
        return data

    def digest(self) -> dict[str, str]:
        return {"sha256": _hex(self.rng)}

    def when(self, back_ms: int = 0) -> datetime:
        return _utc(self.now - back_ms)

    # -- the world

    def setup(self) -> None:
        coord = self.keys["coordinator"] = _key("coordinator")
        self.statement("coordinator", Genesis, origin=BENCH_ORIGIN, coordinator="coordinator",
                       coordinator_key=coord.verifier().to_string())
        parties = [(n, "lab") for n in LABS] + [(n, "auditor") for n in AUDITORS] + \
                  [(n, "regulator") for n in REGULATORS]
        for name, role in parties:
            self.keys[name] = _key(name)
            self.key_gen[name] = 0
            self.statement("coordinator", Admission, admitted=name, verifier_key=self.keys[name].verifier().to_string(),
                           role=role, display_name=name.replace("-", " ").title(),
                           jurisdiction=self.rng.choice(JURISDICTIONS))
        pol = load_pack("coordinated-pause")
        self.policy_digest = pol.digest
        self.statement("coordinator", PolicyPublication, policy_id=pol.id, version=str(pol.version),
                       document=pol.document(), document_digest=pol.digest, effective_from=self.when(),
                       supersedes=[])
        for i in range(3):
            digest = _hex(self.rng)
            self.bases.append(digest)
            self.base_flop[digest] = 10 ** self.rng.uniform(22, 23.9)
            self.statement(self.rng.choice(REGULATORS), BaseModelRegistration, model_name=f"open-base-{i}",
                           model_digest=digest, training_flop=self.base_flop[digest],
                           source=f"published weights, release {i}")
        for lab in LABS:
            self.inventory(lab)
        for lab in LABS[:8]:
            self.statement(lab, Commitment, policy_digest=self.policy_digest, pauses=["training", "releases"],
                           quorum=CountQuorum(kind="count", threshold=6), expires_at=self.when() + timedelta(days=730))
            self.committed.append(lab)

    def inventory(self, lab: str) -> None:
        clusters = []
        for c in range(self.rng.randint(1, 4)):
            chips = self.rng.sample(CHIPS, self.rng.randint(1, 2))
            clusters.append(Cluster(cluster_id=f"{lab}-c{c}", site=f"Site {c} of {lab}",
                                    chips=[ChipCount(chip_model=m, count=self.rng.randint(8, 40_000)) for m in chips]))
        self.statement(lab, ComputeInventory, as_of=self.when(), clusters=clusters)

    def bound(self) -> list[str]:
        return self.pause["bound"] if self.pause else []

    def spec(self, lab: str, run_id: str, base: str | None) -> RunSpec:
        """A run spec as the recorder writes it: environment, pinned factories, initialisation."""
        def ref(name: str) -> FactoryRef:
            return FactoryRef(name=name, distribution=f"{lab}-trainer", version="3.1.4", files_digest=_hex(self.rng),
                              kwargs={"d_model": self.rng.choice([512, 1024, 4096]), "layers": self.rng.randint(4, 80)})

        init = Init(kind="base", base_model_digest=base) if base else Init(kind="fresh", seed=self.rng.randrange(2**32))
        return RunSpec(format="redline-run-spec/v1", party=lab, run_id=run_id, redline_version="0.1.0",
                       environment=Environment(python="3.12.3", torch="2.5.1", numpy="2.1.3",
                                               platform="Linux-6.8-x86_64", device_type="cuda",
                                               device_name="NVIDIA H100 80GB HBM3", cuda="12.4",
                                               cpu_capability="AVX512", blas="MKL 2024.2", onednn="3.5.3",
                                               deterministic_algorithms=True, num_threads=8),
                       declaration=Declaration(model_factory=ref("model"), optimizer=ref("adamw"),
                                               scheduler=ref("cosine"), train_step=ref("lm-step"), max_grad_norm=1.0),
                       init=init, parameter_count=self.rng.randint(10**8, 10**11),
                       checkpoint_every=self.rng.choice([100, 500, 1000]), digest_algorithms=["sha256"])

    def run_start(self, lab: str, *, big: bool = False) -> None:
        self.run_counter += 1
        run_id = f"run-{self.run_counter}"
        model = f"{lab}-m{self.run_counter}"
        r = self.rng.random()
        flop = 2e25 if big else (self.rng.uniform(1e24, 9e24) if r < 0.03 else 10 ** self.rng.uniform(20, 23.7))
        with_spec = self.rng.random() >= 0.1  # one run in ten is declared without a spec
        base = base_digest = None
        lineage = flop  # the run's compute plus its base's (the engine's review line is on the lineage)
        if self.rng.random() < 0.2:
            verified = [b for b in self.finished if b["verified"]]
            if not with_spec and self.finished:  # named by model, its compute found on the log by name
                b = self.rng.choice(self.finished)
                base, lineage = b["model"], flop + b["lineage"]
            elif with_spec and (verified or self.bases):  # by weights digest
                pick = self.rng.randrange(len(verified) + len(self.bases))
                if pick < len(verified):
                    base_digest, lineage = verified[pick]["final"], flop + verified[pick]["lineage"]
                else:
                    base_digest = self.bases[pick - len(verified)]
                    lineage = flop + self.base_flop[base_digest]
        spec = self.spec(lab, run_id, base_digest) if with_spec else None
        self.statement(lab, RunStart, run_id=run_id, model_name=model, declared_flop=flop,
                       flop_method=self.rng.choice(["6ND", "counted"]), base_model=base,
                       hardware=[ChipCount(chip_model=self.rng.choice(CHIPS), count=self.rng.randint(8, 20_000))],
                       started_at=self.when(), spec=spec,
                       init_model_digest=None if spec is None else base_digest or _hex(self.rng))
        run = {"lab": lab, "run_id": run_id, "model": model, "flop": flop, "step": 0, "so_far": 0.0,
               "spec": None if spec is None else spec.digest(), "final": None, "finish_index": None,
               "verified": False, "lineage": lineage}
        self.runs[lab].append(run)
        if lineage > 1e24:
            self.needs_review[model] = lab
        if big:
            bound = self.committed[:]
            self.pause = {"id": str(len(self.entries) - 1), "bound": bound, "acked": set(), "start": self.now,
                          "proposal": None, "approvals": set(), "usage": set()}

    def run_progress(self, run: dict[str, Any]) -> None:
        run["step"] += self.rng.randint(100, 5_000)
        run["so_far"] = min(run["flop"], run["so_far"] + run["flop"] * self.rng.uniform(0.01, 0.08))
        self.statement(run["lab"], RunProgress, run_id=run["run_id"], step=run["step"], flop_so_far=run["so_far"],
                       commitments=TranscriptCommitments(steps_root=_hex(self.rng), data_root=_hex(self.rng),
                                                         checkpoints_root=_hex(self.rng), step_count=run["step"]),
                       spec_digest=run["spec"], as_of=self.when())
        run["progress_index"] = len(self.entries) - 1

    def run_finish(self, run: dict[str, Any]) -> None:
        total = run["flop"] * self.rng.uniform(0.9, 1.0)
        run["final"] = _hex(self.rng)
        self.statement(run["lab"], RunFinish, run_id=run["run_id"], total_flop=total,
                       flop_estimates=FlopEstimates(six_nd=total, hardware=total * self.rng.uniform(0.95, 1.3)),
                       estimates_disagree=False, final_model_digest={"sha256": run["final"]},
                       commitments=TranscriptCommitments(steps_root=_hex(self.rng), data_root=_hex(self.rng),
                                                         checkpoints_root=_hex(self.rng), step_count=run["step"]),
                       spec_digest=run["spec"], manifest_digest=None if run["spec"] is None else _hex(self.rng),
                       finished_at=self.when())
        run["finish_index"] = len(self.entries) - 1
        self.runs[run["lab"]].remove(run)
        self.finished.append(run)
        if len(self.finished) > 400:
            self.finished.pop(0)
        if run["model"] not in self.needs_review:
            self.releasable.append(run)

    def indicator(self) -> None:
        party = self.rng.choice(LABS + AUDITORS + REGULATORS)
        if self.rng.random() < 0.5:
            name, subject, value, unit = "ai-code-share", self.rng.choice(LABS), self.rng.uniform(0.05, 0.6), "fraction"
        else:
            model = self.rng.choice(self.finished)["model"] if self.finished else "none"
            name, subject, value, unit = "time-horizon-50", model, self.rng.uniform(0.2, 7.5), "hours"
        self.statement(party, Indicator, name=name, subject=subject, value=value, unit=unit,
                       interval_low=value * 0.8, interval_high=value * 1.2, window_start=self.when(7 * DAY_MS),
                       window_end=self.when(), method="commit-attribution" if unit == "fraction" else "metr-suite",
                       method_version="2.1", evidence_digest=self.digest())

    def evaluation(self) -> None:
        """An evaluation of a finished run's final weights: by an auditor or regulator, or by the lab that ran it."""
        if not self.finished:
            return
        party = self.rng.choice(LABS + AUDITORS + REGULATORS)
        run = self.rng.choice(self.finished)
        if party in LABS:
            party = run["lab"]
        self.statement(party, EvaluationResult, model_name=run["model"], model_digest={"sha256": run["final"]},
                       suite=self.rng.choice(["cyber-ranges", "bio-qa", "swe-bench-verified", "re-bench"]),
                       task=f"task-{self.rng.randint(1, 500)}", metric=self.rng.choice(["accuracy", "pass@1"]),
                       value=self.rng.random(), evaluator=party, log_digest=self.digest(), evaluated_at=self.when())

    def verification(self) -> None:
        """A report on a finished run's RunFinish (one not verified yet, mostly), else on an open run's progress."""
        waiting = [r for r in self.finished if not r["verified"] and r["spec"] is not None]
        if waiting and self.rng.random() < 0.8:
            run = self.rng.choice(waiting)
        else:
            pool = self.finished or [r for rs in self.runs.values() for r in rs if "progress_index" in r]
            if not pool:
                return
            run = self.rng.choice(pool)
        on = run["finish_index"] if run["finish_index"] is not None else run.get("progress_index")
        verdict = "pass" if self.rng.random() < 0.97 else "inconclusive"
        checks = [Check(name=n, passed=True, detail="ok") for n in ("segments", "data-order")]
        checks.append(Check(name="checkpoints", passed=True, detail="ok") if verdict == "pass" else
                      Check(name="checkpoints", passed=False, inconclusive=True, detail="another device type"))
        self.statement(self.rng.choice(AUDITORS), VerificationReport, run_id=run["run_id"], run_party=run["lab"],
                       checks=checks, verdict=verdict, compute_spent_flop=run["flop"] * 1e-4,
                       sample_seed=self.rng.randbytes(16).hex(), segments_checked=self.rng.randint(4, 64),
                       p_detect=0.99, declaration_index=on)
        if verdict == "pass" and on == run["finish_index"] and run["spec"] is not None:
            run["verified"] = True

    def review_flow(self) -> None:
        r = self.rng.random()
        if self.reviews and r < 0.5:
            rev = self.rng.choice(self.reviews)
            if rev["findings"] < 2:
                rev["findings"] += 1
                self.statement(self.rng.choice(REGULATORS + AUDITORS), ReviewFinding, submitter=rev["lab"],
                               submission_id=rev["id"],
                               finding="Checked the dangerous-capability evaluations; see the attached notes.",
                               severity=self.rng.choice(["info", "concern"]))
            else:
                self.statement(self.rng.choice(REGULATORS), ReviewDecision, submitter=rev["lab"],
                               submission_id=rev["id"],
                               decision="clear", reason="No finding blocks release.")
                self.reviews.remove(rev)
                self.releasable.append(rev["run"])
        else:
            # the final weights of a finished run that needs a review
            run = next((r for r in self.finished if r["model"] in self.needs_review), None)
            if run is None or run["lab"] in self.bound():
                return
            del self.needs_review[run["model"]]
            sid = f"rev-{run['model']}"
            self.statement(run["lab"], ReviewSubmission, submission_id=sid, model_name=run["model"],
                           model_digest={"sha256": run["final"]}, run_id=run["run_id"])
            self.reviews.append({"id": sid, "lab": run["lab"], "model": run["model"], "run": run, "findings": 0})

    def release(self) -> None:
        if not self.releasable:
            return
        # a lab releases verified weights (now and then, weights not verified yet: a violation)
        run = next((r for r in self.releasable if r["verified"]), None)
        if run is None and self.rng.random() < 0.02:
            run = self.releasable[0]
        if run is None:
            return
        self.releasable.remove(run)
        if run["lab"] in self.bound():
            self.releasable.append(run)
            return
        self.statement(run["lab"], Release, model_name=run["model"], model_digest={"sha256": run["final"]},
                       released_at=self.when())

    def rotate(self) -> None:
        party = self.rng.choice(LABS + AUDITORS + REGULATORS)
        self.key_gen[party] += 1
        new = _key(party, self.key_gen[party])
        self.statement(party, KeyRotation, new_verifier_key=new.verifier().to_string())
        self.keys[party] = new

    def pause_step(self) -> bool:
        """Statements the pause calls for; True when one was written."""
        p = self.pause
        assert p is not None
        pending = [lab for lab in p["bound"] if lab not in p["acked"]]
        if pending and self.rng.random() < 0.3:
            lab = pending[0]
            p["acked"].add(lab)
            self.statement(lab, PauseAcknowledgement, pause_id=p["id"])
            return True
        if self.now - p["start"] > 6 * HOUR_MS and self.rng.random() < 0.05:
            lab = self.rng.choice([b for b in p["bound"] if b not in p["usage"]] or p["bound"])
            p["usage"].add(lab)
            self.statement(lab, ComputeUsageReport, period_start=_utc(p["start"]), period_end=self.when(),
                           runs=[RunUsage(run_id=r["run_id"], chip_hours=self.rng.uniform(0, 1e4))
                                 for r in self.runs[lab][:3]], unaccounted_chip_hours=0.0)
            return True
        if not pending and self.now - p["start"] > 24 * HOUR_MS and self.rng.random() < 0.05:
            if p["proposal"] is None:
                p["proposal"] = f"resume-{p['id']}"
                self.statement(p["bound"][0], ResumeProposal, proposal_id=p["proposal"],
                               reason="The danger line was re-assessed; the run is capped below it.")
            else:
                lab = next(b for b in p["bound"] if b not in p["approvals"])
                p["approvals"].add(lab)
                self.statement(lab, ResumeApproval, proposal_id=p["proposal"])
                if len(p["approvals"]) * 2 > len(p["bound"]):
                    self.pause = None
            return True
        return False

    def bad(self) -> None:
        """An entry the engine must reject: altered payload, replayed statement, or garbage."""
        r = self.rng.random()
        if r < 0.4 and self.entries:
            env = Envelope.from_json(self.last_signed)  # the last entry may itself be garbage
            payload = env.payload.replace(b'"seq":', b'"seq":1', 1)
            forged = Envelope(payload, env.payload_type, env.signatures)
            self.add(forged.to_json())
        elif r < 0.7 and len(self.entries) > 40:
            self.add(self.entries[-self.rng.randint(2, 30)].data)
        else:
            self.add(self.rng.choice([b"", b"{}", b"not json", self.rng.randbytes(200),
                                      b'{"payload":"","payloadType":"x","signatures":[]}']))

    def step(self) -> None:
        if self.pause is not None and self.pause_step():
            return
        r = self.rng.random()
        lab = self.rng.choice(LABS)
        paused = lab in self.bound()
        if r < 0.002:
            self.bad()
        elif r < 0.0025:
            self.rotate()
        elif r < 0.003:
            self.inventory(lab)
        elif r < 0.06:
            if self.pause is None and self.pauses_left and len(self.entries) > self.n * 0.15 and \
                    self.rng.random() < 0.0015 * self.pauses_left:
                self.pauses_left -= 1
                self.run_start(self.rng.choice(LABS[:8]), big=True)
            elif not paused and len(self.runs[lab]) < 6:
                self.run_start(lab)
            else:
                self.indicator()
        elif r < 0.42:
            open_runs = [run for run in self.runs[lab] if run["flop"] < 1e25] if not paused else []
            if not open_runs:
                self.indicator()
            elif self.rng.random() < 0.08:
                self.run_finish(self.rng.choice(open_runs))
            else:
                self.run_progress(self.rng.choice(open_runs))
        elif r < 0.58:
            self.indicator()
        elif r < 0.72:
            self.evaluation()
        elif r < 0.82:
            self.verification()
        elif r < 0.94:
            self.review_flow()
        else:
            self.release()

    def generate(self) -> list[Entry]:
        self.setup()
        while len(self.entries) < self.n:
            self.step()
        del self.entries[self.n:]
        return self.entries


def generate(n: int, seed: int) -> list[Entry]:
    """A mixed log of ``n`` signed entries (deterministic in ``n`` and ``seed``)."""
    return _Generator(n, seed).generate()


def _cache_path(n: int, seed: int) -> Path:
    # the statements depend on this generator and on the policy pack's normal form (its digest): a cached log
    # made before either changed would replay into rejections, so both name the file (the generator's source
    # only, from its constants to the benchmark proper: editing the benchmark keeps the cached log)
    source = Path(__file__).read_text("utf-8")
    generator = source[source.index("\nBENCH_ORIGIN = "):source.index("\n# --- the benchmark ---")]
    key = hashlib.sha256(generator.encode() + load_pack("coordinated-pause").digest.encode()).hexdigest()
    return OUT / f"replay-log-v{GENERATOR_VERSION}-n{n}-seed{seed}-{key[:12]}.bin"


def load_or_generate(n: int, seed: int) -> tuple[list[Entry], str]:
    """The cached log for these parameters, generating (and caching) it if need be."""
    path = _cache_path(n, seed)
    if path.exists():
        raw = path.read_bytes()
        entries, off = [], 0
        while off < len(raw):
            t, size = struct.unpack_from(">QI", raw, off)
            off += 12
            entries.append(Entry(len(entries), t, raw[off:off + size]))
            off += size
        if len(entries) == n:
            return entries, f"cached {path.relative_to(OUT.parent.parent)}"
    t0 = time.perf_counter()
    entries = generate(n, seed)
    dt = time.perf_counter() - t0
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        for e in entries:
            f.write(struct.pack(">QI", e.time_ms, len(e.data)))
            f.write(e.data)
    os.replace(tmp, path)
    return entries, f"generated in {dt:.1f} s, cached in {path.relative_to(OUT.parent.parent)}"


def describe(entries: list[Entry]) -> str:
    """Counts of statement kinds in the log (by predicate type), for the header."""
    kinds: dict[str, int] = {}
    for e in entries:
        try:
            env = json.loads(e.data)
            payload = json.loads(base64.b64decode(env["payload"]))
            k = payload["predicateType"].split(":")[2]
        except Exception:
            k = "(garbage)"
        kinds[k] = kinds.get(k, 0) + 1
    return ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))


# --- the benchmark -------------------------------------------------------------------


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _machine_busy() -> float:
    """CPU seconds the whole machine has been busy (Linux /proc/stat; 0 elsewhere)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


OTHERS: list[float] = []  # CPU seconds other processes took during each timed run


# --- the Ed25519 bound ---------------------------------------------------------------


def signatures(entries: list[Entry]) -> tuple[list[str], list[tuple[int, bytes, bytes]]]:
    """The signatures a replay verifies: for each entry that parses as an envelope, the first signature of
    each key ID that is a key the log names (what ``replay_parallel``'s helpers verify), as the verifier-key
    strings and ``(key number, PAE message, signature)``."""
    keys = candidate_keys(e.data for e in entries)
    order = {fp: i for i, fp in enumerate(keys)}
    out: list[tuple[int, bytes, bytes]] = []
    for e in entries:
        if len(e.data) > MAX_ENTRY_BYTES:
            continue
        try:
            env = Envelope.from_json(e.data)
        except Exception:
            continue
        message = pae(env.payload_type, env.payload)
        seen: set[str] = set()
        for sig in env.signatures:
            if sig.keyid in order and sig.keyid not in seen:
                out.append((order[sig.keyid], message, sig.sig))
            seen.add(sig.keyid)
    return [k.to_string() for k in keys.values()], out


def _verify_share(conn: Any) -> None:
    """One process of the bound: its share of the signatures, verified once everyone is ready, timed."""
    key_strings, share = conn.recv()
    keys = [VerifierKey.from_string(k) for k in key_strings]
    conn.send("ready")
    conn.recv()
    c0, t0 = time.process_time(), time.perf_counter()
    for k, message, sig in share:
        try:
            keys[k].verify(message, sig)  # what every verification in redline is: libsodium's crypto_sign_open
        except BadSignature:
            pass
    t1 = time.perf_counter()
    conn.send((t0, t1, time.process_time() - c0))


def ed25519_bound(key_strings: list[str], sigs: list[tuple[int, bytes, bytes]],
                  processes: int) -> tuple[float, float, float]:
    """Wall seconds and CPU seconds to verify ``sigs`` with ``VerifierKey.verify`` spread over ``processes``
    processes started (and handed their share) beforehand: the same verifications as the replay, nothing else;
    and the CPU seconds other processes took meanwhile."""
    ctx = multiprocessing.get_context("spawn")
    conns, procs = [], []
    for i in range(processes):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_verify_share, args=(child,))
        proc.start()
        parent.send((key_strings, sigs[i::processes]))
        conns.append(parent)
        procs.append(proc)
    for conn in conns:
        conn.recv()
    busy = _machine_busy()
    for conn in conns:
        conn.send("go")
    results = [conn.recv() for conn in conns]
    busy = _machine_busy() - busy
    for proc in procs:
        proc.join()
    cpu = sum(r[2] for r in results)
    return max(r[1] for r in results) - min(r[0] for r in results), cpu, max(0.0, busy - cpu)


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float, float, float]:
    """Run once: the result, wall seconds, CPU seconds of this process and of its (reaped) worker processes."""
    gc.collect()
    b0, c0, k0, t0 = _machine_busy(), time.process_time(), _children_cpu(), time.perf_counter()
    out = fn(*args, **kwargs)
    t1 = time.perf_counter()
    cpu, children = time.process_time() - c0, _children_cpu() - k0
    OTHERS.append(max(0.0, _machine_busy() - b0 - cpu - children))
    return out, t1 - t0, cpu, children


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="statements in the log (default 100,000)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes for the parallel replay (default 2)")
    ap.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help=f"entries per worker task "
                                                                     f"(default {DEFAULT_CHUNK})")
    ap.add_argument("--seed", type=int, default=1, help="seed of the generated log (default 1)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per side, alternating; the best of each is "
                                                         "reported (default 1)")
    ap.add_argument("--quick", action="store_true", help="a 10,000-statement log")
    args = ap.parse_args(argv)
    n = 10_000 if args.quick else args.n

    say(f"redline replay benchmark: {n:,} statements, {args.workers} worker(s), {time.strftime('%Y-%m-%d %H:%M')}")
    say(f"machine: {platform.machine()}, {os.cpu_count()} CPU(s) ({len(os.sched_getaffinity(0))} usable), "
        f"Python {platform.python_version()}, {platform.platform()}")
    entries, how = load_or_generate(n, args.seed)
    say(f"log: {how}; {sum(len(e.data) for e in entries) / len(entries):,.0f} bytes per entry on average")
    say(f"mix: {describe(entries)}")
    say(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on the machine "
        f"slows both sides)")
    say()

    def row(name: str, wall: float, cpu: float, workers_cpu: float, others: float | None = None) -> None:
        say(f"{name:<44} {wall:7.2f} s  {n / wall:8,.0f} statements/s   CPU {cpu / n * 1e6:4.0f} µs/statement"
            + (f" here + {workers_cpu / n * 1e6:.0f} in workers" if workers_cpu else "")
            + (f"; other processes took {others / wall:.0%} of a core meanwhile" if others is not None else ""))

    key_strings, sigs = signatures(entries)
    bound_name = f"Ed25519 bound ({len(sigs):,} signatures, {args.workers} processes)"

    def bound_row(wall: float, cpu: float, others: float | None = None) -> None:
        say(f"{bound_name:<44} {wall:7.2f} s  {n / wall:8,.0f} statements/s   CPU {cpu / len(sigs) * 1e6:4.0f} "
            "µs/signature (VerifierKey.verify, libsodium, nothing else)"
            + (f"; other processes took {others / wall:.0%} of a core meanwhile" if others is not None else ""))

    base_runs: list[tuple[str, float, float, float]] = []
    par_runs: list[tuple[str, float, float, float]] = []
    bound_runs: list[tuple[float, float]] = []
    summary = ""
    for r in range(max(1, args.repeat)):
        if r:
            say(f"run {r + 1}:")
        state, *times = timed(replay, entries)
        base_runs.append((state.digest(), *times))
        summary = (f"entries: {n - len(state.rejected):,} accepted, {len(state.rejected):,} rejected; "
                   f"{len(state.violations)} violations, {len(state.pauses)} pause(s), {len(state.crossings)} "
                   "crossings")
        del state  # a large live heap slows the next run's garbage collections
        row("baseline  replay (sequential, 1 core)", *base_runs[-1][1:3], 0.0, OTHERS[-1])
        state, *times = timed(replay_parallel, entries, workers=args.workers, chunk=args.chunk)
        par_runs.append((state.digest(), *times))
        del state
        row(f"redline   replay_parallel ({args.workers} workers)", *par_runs[-1][1:], OTHERS[-1])
        wall, cpu, others = ed25519_bound(key_strings, sigs, args.workers)
        bound_runs.append((wall, cpu))
        bound_row(wall, cpu, others)
    _, t_base, c_base, _ = min(base_runs, key=lambda run: run[1])
    _, t_par, c_par, w_par = min(par_runs, key=lambda run: run[1])
    t_bound, c_bound = min(bound_runs)
    if args.repeat > 1:
        say(f"best of {args.repeat}:")
        row("baseline  replay (sequential, 1 core)", t_base, c_base, 0.0)
        row(f"redline   replay_parallel ({args.workers} workers)", t_par, c_par, w_par)
        bound_row(t_bound, c_bound)
    d_base, d_par = {run[0] for run in base_runs}, {run[0] for run in par_runs}
    if len(d_base) != 1 or d_base != d_par:
        say(f"ABORT: state digests differ: sequential {sorted(d_base)}, parallel {sorted(d_par)}")
        return 2
    say(f"state digest (equal on both sides): {d_base.pop()}")
    say(summary)
    say(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rate, bound = n / t_par, n / t_bound
    say()
    say(f"Ed25519 bound: {bound:,.0f} statements/s; replay_parallel reaches {rate / bound:.0%} of it "
        f"(goal >= {GOAL_OF_BOUND:.0%}: {'MET' if rate >= GOAL_OF_BOUND * bound else 'NOT MET'})")
    say(f"goal: >= {GOAL_PER_S:,} statements/s with every signature verified: "
        f"{'MET' if rate >= GOAL_PER_S else 'NOT MET'} ({rate:,.0f}/s)")
    say(f"ratio (redline / baseline throughput): {t_base / t_par:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
