"""Classification metrics from logits: plain torch, no framework, easy to test."""

from __future__ import annotations

import torch
import torch.nn.functional as F

ECE_BINS = 15


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Rows are true classes, columns predicted classes."""
    flat = labels.to(torch.int64) * num_classes + predictions.to(torch.int64)
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def expected_calibration_error(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> float:
    confidence, predictions = probabilities.max(dim=1)
    correct = (predictions == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    error = torch.zeros(())
    for low, high in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            error += in_bin.float().mean() * (confidence[in_bin].mean() - correct[in_bin].mean()).abs()
    return float(error)


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    """accuracy, macro_f1, balanced_accuracy, nll, ece and per-class recall (``recall_<index>``)."""
    labels = labels.to(torch.int64).cpu()
    logits = logits.float().cpu()
    if labels.numel() == 0:
        raise ValueError("cannot compute metrics on an empty split")
    predictions = logits.argmax(dim=1)
    matrix = confusion_matrix(predictions, labels, num_classes).float()
    true_per_class = matrix.sum(dim=1)
    predicted_per_class = matrix.sum(dim=0)
    hits = matrix.diag()
    present = true_per_class > 0
    recall = torch.where(present, hits / true_per_class.clamp_min(1), torch.zeros_like(hits))
    precision = torch.where(predicted_per_class > 0, hits / predicted_per_class.clamp_min(1), torch.zeros_like(hits))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp_min(1e-12), torch.zeros_like(hits))
    metrics = {
        "accuracy": float(hits.sum() / labels.numel()),
        "macro_f1": float(f1[present].mean()),
        "balanced_accuracy": float(recall[present].mean()),
        "nll": float(F.cross_entropy(logits, labels)),
        "ece": expected_calibration_error(logits.softmax(dim=1), labels),
    }
    metrics.update({f"recall_{index}": float(value) for index, value in enumerate(recall)})
    return metrics
