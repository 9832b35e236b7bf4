"""Recording Hugging Face ``transformers`` training: a ``TrainerCallback`` around :class:`Recorder`.

::

    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      callbacks=[RecorderCallback("transcript", party="lab-a", run_id="r1",
                                                  init=Init(kind="fresh", seed=0), checkpoint_every=100)])
    trainer.train()

The callback starts a recorder when training begins (checkpoint of step 0),
captures every training micro-batch and its loss with a forward hook on the model
(``Trainer`` calls ``model(**inputs)``), records one step per optimizer step
(micro-batches of a gradient-accumulation step are named ``0.input_ids``,
``1.input_ids``, ...), and closes the transcript when training ends. Unless told
otherwise it declares the model as ``model_from_config`` of the model's class and
config, the train step as :func:`model_loss`, the optimizer from its class and
defaults, and ``max_grad_norm`` from the training arguments; the data source and
scheduler are left for the caller to declare (the notes say so).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import TrainerCallback

from redline.errors import MalformedInput
from redline.transcript.factories import pin
from redline.transcript.format import Declaration, Init
from redline.transcript.recorder import Recorder


def _model_class(model_class: Any) -> type:
    """The ``transformers`` model class named ``transformers:<Name>``; anything else is ``MalformedInput``.

    ``<Name>`` must be a public attribute of the ``transformers`` package (checked against its listing before
    it is looked up, so nothing outside ``transformers`` is ever imported) and a subclass of ``PreTrainedModel``
    (not ``PreTrainedModel`` itself).
    """
    module, sep, name = model_class.partition(":") if isinstance(model_class, str) else ("", "", "")
    if module != "transformers" or not sep or not name.isidentifier() or name.startswith("_") \
            or name not in dir(transformers):
        raise MalformedInput(f"model_class {model_class!r} is not 'transformers:<Name>' naming a public model class "
                             f"of the transformers package")
    try:
        cls = getattr(transformers, name)
    except (AttributeError, ImportError, RuntimeError) as exc:
        raise MalformedInput(f"model_class {model_class!r}: transformers cannot provide {name!r}: {exc}") from None
    if not isinstance(cls, type) or not issubclass(cls, transformers.PreTrainedModel) \
            or cls is transformers.PreTrainedModel:
        raise MalformedInput(f"model_class {model_class!r} is not a transformers model class "
                             f"(a subclass of transformers.PreTrainedModel)")
    return cls


def model_from_config(model_class: str, config: dict[str, Any]) -> torch.nn.Module:
    """Model factory entry point: ``model_class`` (``transformers:<Name>``, a ``transformers`` model class) built
    from a config dictionary; any other class is refused (``MalformedInput``) before anything is imported."""
    cls = _model_class(model_class)
    return cls(cls.config_class.from_dict(config))


def model_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Train-step entry point: the loss a ``transformers`` model returns for ``batch`` (with labels)."""
    device = next(model.parameters()).device
    return model(**{k: v.to(device) for k, v in batch.items()}).loss


def _loss_of(output: Any) -> torch.Tensor | None:
    loss = getattr(output, "loss", None)
    if loss is None and isinstance(output, dict):
        loss = output.get("loss")
    return loss if isinstance(loss, torch.Tensor) else None


class RecorderCallback(TrainerCallback):
    """A ``transformers.TrainerCallback`` that records a redline transcript of the training run."""

    def __init__(self, out: str | Path, *, party: str, run_id: str, init: Init, checkpoint_every: int = 100,
                 declaration: Declaration | None = None, digests: tuple[str, ...] = ("sha256",),
                 count_flop: bool = False, durable: bool = True) -> None:
        self.out = Path(out)
        self.party, self.run_id, self.init = party, run_id, init
        self.checkpoint_every = checkpoint_every
        self.declaration = declaration
        self.digests = digests
        self.count_flop = count_flop
        self.durable = durable
        self.recorder: Recorder | None = None
        self._micro: list[tuple[dict[str, torch.Tensor], torch.Tensor | None]] = []
        self._hook: Any = None

    def _declare(self, model: Any, args: Any) -> Declaration:
        given = self.declaration.model_dump() if self.declaration is not None else {}
        fields: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        config = getattr(model, "config", None)
        if "model_factory" not in fields and config is not None:
            cls = type(model)
            fields["model_factory"] = pin("model_factory", "hf-from-config", model_class=f"transformers:{cls.__name__}",
                                          config=json.loads(config.to_json_string(use_diff=False)))
        fields.setdefault("train_step", pin("train_step", "hf-model-loss"))
        if "max_grad_norm" not in fields and getattr(args, "max_grad_norm", 0):
            fields["max_grad_norm"] = float(args.max_grad_norm)
        return Declaration.model_validate(fields)

    def _forward_hook(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                      output: Any) -> None:
        if not (module.training and torch.is_grad_enabled()):
            return
        inputs = {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
        inputs.update({str(i): v for i, v in enumerate(args) if isinstance(v, torch.Tensor)})
        self._micro.append((inputs, _loss_of(output)))

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None,
                       lr_scheduler: Any = None, **kwargs: Any) -> None:
        """Start recording: declaration, checkpoint of step 0, forward hook."""
        if model is None:
            raise ValueError("RecorderCallback needs the model (Trainer passes it to callbacks)")
        self.recorder = Recorder(self.out, model, optimizer, party=self.party, run_id=self.run_id, init=self.init,
                                 scheduler=lr_scheduler,
                                 declaration=self._declare(model, args), checkpoint_every=self.checkpoint_every,
                                 digests=self.digests, count_flop=self.count_flop, durable=self.durable)
        self._hook = model.register_forward_hook(self._forward_hook, with_kwargs=True)
        self.recorder.start()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Record the optimizer step just taken, with the micro-batches it consumed."""
        if self.recorder is None:
            return
        micro, self._micro = self._micro, []
        if len(micro) == 1:
            batch: Any = micro[0][0]
        else:
            batch = {str(i): inputs for i, (inputs, _) in enumerate(micro)}
        losses = [loss.detach().float() for _, loss in micro if loss is not None]
        loss = torch.stack(losses).mean() if losses else None
        self.recorder.step(batch, loss, position=state.global_step - 1)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Close the transcript (final checkpoint, manifest)."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self.recorder is not None:
            self.recorder.close()


__all__ = ["RecorderCallback", "model_from_config", "model_loss"]
