"""The tiny GPT shipped for tests, benchmarks and the demo: model, data, training script."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from redline.transcript import load_transcript
from redline.transcript.tinygpt import (
    MODEL_DEFAULTS,
    TrainConfig,
    corpus_tokens,
    make_model,
    text_batches,
    train,
)

SMALL = {"seq_len": 16, "d_model": 16, "n_layer": 1, "n_head": 2}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_corpus_ships_with_the_package() -> None:
    tokens = corpus_tokens()
    assert tokens.dtype == torch.int64 and len(tokens) > 5000
    assert bytes(tokens[:8].tolist()) == b"# redlin"


def test_batches_are_random_access_and_fixed_by_seed_and_position() -> None:
    a, b = text_batches(5, 4, 16), text_batches(5, 4, 16)
    later = a.batch(17)
    a.batch(3)
    assert torch.equal(b.batch(17)["input_ids"], later["input_ids"])
    assert torch.equal(later["labels"][:, :-1], later["input_ids"][:, 1:])
    assert not torch.equal(text_batches(6, 4, 16).batch(17)["input_ids"], later["input_ids"])
    assert later["input_ids"].shape == (4, 16) and later["input_ids"].is_contiguous()


def test_make_model_defaults_and_refuses_unknown_arguments() -> None:
    model = make_model()
    assert model.tok.weight is model.head.weight
    n = sum(p.numel() for p in model.parameters())
    assert 50_000 < n < 200_000
    assert make_model(**SMALL)(torch.zeros(2, 16, dtype=torch.int64)).shape == (2, 16, MODEL_DEFAULTS["vocab_size"])
    with pytest.raises(TypeError, match="unknown arguments"):
        make_model(width=3)


def test_training_learns_and_is_deterministic(tmp_path: Path) -> None:
    cfg = TrainConfig(steps=60, seed=2, batch_size=4, model=SMALL, lr=1e-2)
    a = train(cfg, tmp_path / "a", checkpoint_every=20)
    b = train(cfg, tmp_path / "b", checkpoint_every=20, count_flop=False)
    assert sum(a.losses[-10:]) < sum(a.losses[:10])
    assert a.losses == b.losses
    assert a.manifest is not None and b.manifest is not None
    assert a.manifest.commitments == b.manifest.commitments  # same run, same roots: nothing time-dependent
    c = train(TrainConfig(steps=60, seed=3, batch_size=4, model=SMALL, lr=1e-2), tmp_path / "c", checkpoint_every=20)
    assert c.manifest is not None
    assert c.manifest.commitments.data_root != a.manifest.commitments.data_root


def test_the_training_script(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "redline.transcript.tinygpt", "--steps", "12", "--out", str(out),
                           "--checkpoint-every", "5", "--seed", "4", "--d-model", "16", "--layers", "1",
                           "--heads", "2", "--seq-len", "16", "--batch-size", "2", "--blake3"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    t = load_transcript(out)
    assert [c.step for c in t.checkpoints] == [0, 5, 10, 12]
    assert t.manifest.declaration.data_source is not None and t.manifest.declaration.data_source.seed == 4
    assert t.manifest.digest_algorithms == ["sha256", "blake3"]
    assert f"steps_root {t.commitments.steps_root}" in proc.stdout
    assert "FLOP per step (counted)" in proc.stdout
