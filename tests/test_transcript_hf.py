"""The ``transformers`` Trainer callback, on a tiny randomly initialised GPT-2 (nothing is downloaded)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments  # noqa: E402

from redline.transcript import load_transcript  # noqa: E402
from redline.transcript.format import Init  # noqa: E402
from redline.transcript.hf import RecorderCallback, model_from_config, model_loss  # noqa: E402
from redline.transcript.torchstate import batch_digest, named_tensors_equal  # noqa: E402

STEPS = 6


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Sequences(torch.utils.data.Dataset):
    def __init__(self, n: int, length: int, vocab: int) -> None:
        g = torch.Generator().manual_seed(3)
        self.ids = torch.randint(0, vocab, (n, length), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


#: The trainer builds its model right after torch.manual_seed(0).
INIT = Init(kind="fresh", seed=0)


def _trainer(tmp_path: Path, callback: RecorderCallback, accumulation: int = 1) -> Trainer:
    torch.manual_seed(0)
    config = GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=64, n_positions=16,
                        bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config)
    args = TrainingArguments(output_dir=str(tmp_path / "hf"), max_steps=STEPS, per_device_train_batch_size=2,
                             gradient_accumulation_steps=accumulation, logging_steps=1, save_strategy="no",
                             report_to="none", use_cpu=True, seed=0, disable_tqdm=True, learning_rate=1e-3,
                             dataloader_num_workers=0)
    return Trainer(model=model, args=args, train_dataset=Sequences(32, 16, 64), callbacks=[callback])


def test_trainer_callback_records_a_verifiable_transcript(tmp_path: Path) -> None:
    callback = RecorderCallback(tmp_path / "t", party="lab-a", run_id="r1", init=INIT, checkpoint_every=3,
                                count_flop=True)
    seen: list[str] = []
    trainer = _trainer(tmp_path, callback)
    hook = trainer.model.register_forward_pre_hook(
        lambda m, a, kw: seen.append(batch_digest({k: v for k, v in kw.items() if isinstance(v, torch.Tensor)}))
        if m.training else None, with_kwargs=True)
    trainer.train()
    hook.remove()
    t = load_transcript(tmp_path / "t")
    assert t.step_count == STEPS
    assert [c.step for c in t.checkpoints] == [0, 3, 6]
    assert [r.batch["sha256"] for r in t.data] == seen
    assert [r.position for r in t.data] == list(range(STEPS))
    assert all(r.tokens == 2 * 16 for r in t.steps)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert [r.loss for r in t.steps] == pytest.approx(losses, abs=1e-3)
    # hyperparameters are recorded after the step, scheduler included: linear decay from 1e-3 to 0
    assert [r.optimizer[0]["lr"] for r in t.steps] == pytest.approx([1e-3 * (STEPS - s) / STEPS
                                                                      for s in range(1, STEPS + 1)])
    assert t.manifest.flop is not None and t.manifest.flop.per_step > 0
    final = t.checkpoint(STEPS).load()
    assert named_tensors_equal(final.model_state, trainer.model.state_dict()) == []
    assert final.scheduler_state is not None and final.scheduler_state["last_epoch"] == STEPS

    decl = t.manifest.declaration
    assert decl.max_grad_norm == 1.0
    assert decl.model_factory is not None and decl.train_step is not None
    assert decl.model_factory.name == "hf-from-config" and decl.train_step.name == "hf-model-loss"
    assert decl.model_factory.kwargs["model_class"] == "transformers:GPT2LMHeadModel"
    rebuilt = model_from_config(**decl.model_factory.kwargs)
    rebuilt.load_state_dict(final.model_state)
    batch = {"input_ids": torch.zeros(1, 8, dtype=torch.int64), "labels": torch.zeros(1, 8, dtype=torch.int64)}
    rebuilt.eval()
    trainer.model.eval()
    assert torch.equal(model_loss(rebuilt, batch), model_loss(trainer.model, batch))
    assert any("no data source declared" in n for n in decl.notes)


def test_gradient_accumulation_records_every_micro_batch_of_a_step(tmp_path: Path) -> None:
    callback = RecorderCallback(tmp_path / "t", party="lab-a", run_id="r1", init=INIT, checkpoint_every=100)
    _trainer(tmp_path, callback, accumulation=2).train()
    t = load_transcript(tmp_path / "t")
    assert t.step_count == STEPS and [c.step for c in t.checkpoints] == [0, STEPS]
    assert all(r.tokens == 2 * 2 * 16 for r in t.steps)
