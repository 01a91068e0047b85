"""Score every candidate, and the untouched source model, on the frozen target splits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from graft.data.dataset import TargetSplits
from graft.evaluation.calibration import fit_temperature
from graft.evaluation.metrics import classification_metrics, confusion_matrix, expected_calibration_error
from graft.models.bundle import ModelBundle
from graft.results import CandidateScores, Evaluation
from graft.training.loop import predict_logits
from graft.transfer import CandidateSet


def _scores(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[dict[str, float], list[list[int]]]:
    metrics = classification_metrics(logits, labels, num_classes)
    matrix = confusion_matrix(logits.argmax(dim=1), labels, num_classes).tolist()
    return metrics, matrix


def score_bundle(bundle: ModelBundle, splits: TargetSplits, split: str) -> tuple[dict[str, float], list[list[int]]]:
    logits = predict_logits(bundle.build_model(), splits.view(split), bundle.preprocessing)
    return _scores(logits, splits.labels(split), splits.dataset.num_classes)


def score_candidate(bundle: ModelBundle, splits: TargetSplits) -> dict:
    """Validation and test metrics, the test confusion matrix, and calibration after temperature
    scaling (fitted on validation), from one pass over each split."""
    model = bundle.build_model()
    num_classes = splits.dataset.num_classes
    val_logits = predict_logits(model, splits.view("val"), bundle.preprocessing)
    test_logits = predict_logits(model, splits.view("test"), bundle.preprocessing)
    val_labels, test_labels = splits.labels("val"), splits.labels("test")
    val, _ = _scores(val_logits, val_labels, num_classes)
    test, matrix = _scores(test_logits, test_labels, num_classes)
    temperature = fit_temperature(val_logits, val_labels)
    scaled = test_logits / temperature
    test.update(
        {
            "temperature": temperature,
            "nll_calibrated": float(F.cross_entropy(scaled, test_labels)),
            "ece_calibrated": expected_calibration_error(scaled.softmax(dim=1), test_labels),
        }
    )
    return {"test": test, "val": val, "confusion_matrix": matrix}


def evaluate_candidates(candidates: CandidateSet, splits: TargetSplits, source: ModelBundle, baseline: str) -> Evaluation:
    """Test and validation metrics per candidate, the gap to the baseline, and source-only scores.

    ``negative_transfer_gap`` is baseline accuracy minus candidate accuracy on the test split:
    above zero, transfer made the model worse than training from scratch.
    """
    rows = {candidate.strategy: score_candidate(candidate.bundle, splits) for candidate in candidates.candidates}
    baseline_accuracy = rows[baseline]["test"]["accuracy"] if baseline in rows else None
    scores = {
        name: CandidateScores(
            **row, negative_transfer_gap=None if baseline_accuracy is None else baseline_accuracy - row["test"]["accuracy"]
        )
        for name, row in rows.items()
    }
    same_classes = list(source.class_names) == list(splits.dataset.class_names)
    return Evaluation(
        class_names=list(splits.dataset.class_names),
        test_images=splits.size("test"),
        val_images=splits.size("val"),
        eval_set_hash=splits.eval_set_hash(),
        baseline=baseline,
        candidates=scores,
        source_only=score_bundle(source, splits, "test")[0] if same_classes else None,
    )
