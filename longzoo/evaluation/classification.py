"""Classification metrics: accuracy, macro-F1 and micro-F1, single- and multi-label.

Single-label: accuracy is the share of documents whose predicted class is right; micro-F1
equals accuracy; macro-F1 averages each class's F1 (a class never predicted nor present
scores 0, as in scikit-learn's ``zero_division=0``).  Multi-label: accuracy is the share of
documents whose whole label set is right (subset accuracy); F1 counts label decisions.
"""

from __future__ import annotations


def classification_metrics(truth, predicted) -> dict:
    """Metrics from two (documents × classes) 0/1 arrays (tensors or nested lists)."""
    import torch

    truth = torch.as_tensor(truth).bool()
    predicted = torch.as_tensor(predicted).bool()
    if truth.shape != predicted.shape or truth.dim() != 2 or truth.shape[0] == 0:
        raise ValueError(f"need two (documents, classes) arrays of one shape, got {truth.shape} and {predicted.shape}")
    tp = (truth & predicted).sum(0).double()
    fp = (~truth & predicted).sum(0).double()
    fn = (truth & ~predicted).sum(0).double()
    per_class = 2 * tp / (2 * tp + fp + fn).clamp(min=1)
    micro = 2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum()).clamp(min=1)
    return {
        "accuracy": float((truth == predicted).all(1).double().mean()),
        "macro_f1": float(per_class.mean()),
        "micro_f1": float(micro),
        "documents": int(truth.shape[0]),
    }


def decisions(logits, multi_label: bool):
    """0/1 decisions from logits: the top class, or every class with probability above ½."""
    import torch

    logits = torch.as_tensor(logits)
    if multi_label:
        return logits > 0
    return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).bool()


def metrics_for_trainer(multi_label: bool):
    """A ``compute_metrics`` for transformers' Trainer: logits and labels in, the metrics above out."""
    import torch

    def compute(prediction) -> dict:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        truth = torch.as_tensor(prediction.label_ids)
        if not multi_label:
            truth = torch.nn.functional.one_hot(truth.long(), logits.shape[-1])
        return classification_metrics(truth, decisions(logits, multi_label))

    return compute
