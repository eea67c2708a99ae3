"""transformers' ``Trainer`` with the two things longzoo's runs must be able to trust.

* **The loss is the mean over predicted tokens of the whole optimizer step**, whatever
  ``--grad-accum`` is.  Longformer's ``forward`` takes ``**kwargs``, so the Trainer assumes
  the model divides its loss by ``num_items_in_batch`` and stops dividing by the
  accumulation steps; Longformer does neither, and loss and gradients came out × accumulation.
  Masked-LM runs therefore compute the loss here (summed, divided by the step's predicted
  tokens, as the Trainer expects of a loss that takes ``num_items_in_batch``), so that
  4 micro-batches of 1 give the same update as 1 batch of 4.  Classification runs have one
  target per document and equal micro-batches: the Trainer's own division by the
  accumulation steps is right once it stops passing ``num_items_in_batch`` to the model.
* **Masked-LM logits only where a token is predicted** (:mod:`longzoo.models.sparse`).
* **Training stops at the first non-finite loss or gradient**, before the optimizer step
  can write NaN into the weights, with one line naming the step.  (The Trainer's
  ``logging_nan_inf_filter`` would otherwise hide it behind the average of earlier losses.)
"""

from __future__ import annotations

import torch
from transformers import Trainer, TrainerCallback

from longzoo.models.sparse import use_sparse_prediction
from longzoo.weights import NonFiniteError

IGNORE_INDEX = -100


def masked_lm_loss(outputs, labels, num_items_in_batch=None):
    """Cross-entropy summed over predicted tokens, divided by the step's predicted-token count.

    ``logits`` are either per position (batch, length, vocabulary) or, from sparse prediction,
    per predicted token (predicted, vocabulary) in the order of ``labels != -100``.
    """
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    if logits.dim() == 2 and labels.dim() == 2:
        labels = labels[labels != IGNORE_INDEX]
    total = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        labels.reshape(-1).to(logits.device),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    count = num_items_in_batch if num_items_in_batch is not None else (labels != IGNORE_INDEX).sum()
    if torch.is_tensor(count):
        count = count.to(total.device)
    return total / count


class _GradientGuard(TrainerCallback):
    """Checks the gradients once per optimizer step, after clipping and before the update."""

    def __init__(self, trainer: LongzooTrainer):
        self.trainer = trainer

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if args.fp16:
            return  # the fp16 grad scaler skips overflowing steps on purpose
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if grads and not bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)).all()):
            self.trainer.stop_non_finite("gradient norm")


class LongzooTrainer(Trainer):
    """``Trainer`` with an honest loss (see the module docstring) and a stop on NaN or inf.

    ``on_non_finite`` completes the one-line message: what the user still has and can do.
    """

    def __init__(self, *args, masked_lm: bool = False, on_non_finite: str = "", **kwargs):
        if masked_lm:
            kwargs["compute_loss_func"] = masked_lm_loss
            use_sparse_prediction(kwargs.get("model") or args[0])
        self.masked_lm = masked_lm
        super().__init__(*args, **kwargs)
        if not masked_lm:
            self.model_accepts_loss_kwargs = False  # divide by the accumulation steps ourselves
        self.on_non_finite = on_non_finite
        self.add_callback(_GradientGuard(self))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.masked_lm and "labels" in inputs:  # logits only where a token is predicted
            inputs = {**inputs, "predict_mask": inputs["labels"] != IGNORE_INDEX}
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not bool(torch.isfinite(loss)):
            self.stop_non_finite(f"loss ({float(loss)})")
        return loss

    def stop_non_finite(self, what: str) -> None:
        step = self.state.global_step + 1
        raise NonFiniteError(f"step {step}: the training {what} is not finite; training stopped. {self.on_non_finite}")
