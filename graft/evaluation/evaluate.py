"""Score every candidate, and the untouched source model, on the frozen target splits."""

from __future__ import annotations

from graft.data.dataset import TargetSplits
from graft.evaluation.calibration import fit_temperature
from graft.evaluation.metrics import classification_metrics, confusion_matrix, expected_calibration_error
from graft.models.bundle import ModelBundle
from graft.training.loop import predict_logits
from graft.transfer import CandidateSet

SOURCE_ONLY = "source_only"


def score_bundle(bundle: ModelBundle, splits: TargetSplits, split: str) -> tuple[dict[str, float], list[list[int]]]:
    model = bundle.build_model()
    logits = predict_logits(model, splits.images(split), bundle.preprocessing)
    labels = splits.labels(split)
    num_classes = splits.dataset.num_classes
    metrics = classification_metrics(logits, labels, num_classes)
    matrix = confusion_matrix(logits.argmax(dim=1), labels, num_classes).tolist()
    return metrics, matrix


def calibrated_test_metrics(bundle: ModelBundle, splits: TargetSplits) -> dict[str, float]:
    """Temperature fitted on validation, applied to test: NLL and ECE after scaling."""
    import torch.nn.functional as F

    model = bundle.build_model()
    temperature = fit_temperature(predict_logits(model, splits.images("val"), bundle.preprocessing), splits.labels("val"))
    test_logits = predict_logits(model, splits.images("test"), bundle.preprocessing) / temperature
    labels = splits.labels("test")
    return {
        "temperature": temperature,
        "nll_calibrated": float(F.cross_entropy(test_logits, labels)),
        "ece_calibrated": expected_calibration_error(test_logits.softmax(dim=1), labels),
    }


def evaluate_candidates(candidates: CandidateSet, splits: TargetSplits, source: ModelBundle, baseline: str) -> dict:
    """Test and validation metrics per candidate, the gap to the baseline, and source-only scores.

    ``negative_transfer_gap`` is baseline accuracy minus candidate accuracy on the test split:
    above zero, transfer made the model worse than training from scratch.
    """
    rows: dict[str, dict] = {}
    for candidate in candidates.candidates:
        test, matrix = score_bundle(candidate.bundle, splits, "test")
        test.update(calibrated_test_metrics(candidate.bundle, splits))
        val, _ = score_bundle(candidate.bundle, splits, "val")
        rows[candidate.strategy] = {"test": test, "val": val, "confusion_matrix": matrix}
    baseline_accuracy = rows[baseline]["test"]["accuracy"] if baseline in rows else None
    for name, row in rows.items():
        row["negative_transfer_gap"] = None if baseline_accuracy is None else baseline_accuracy - row["test"]["accuracy"]
    same_classes = list(source.class_names) == list(splits.dataset.class_names)
    source_only = score_bundle(source, splits, "test")[0] if same_classes else None
    return {
        "class_names": list(splits.dataset.class_names),
        "test_images": splits.size("test"),
        "val_images": splits.size("val"),
        "eval_set_hash": splits.eval_set_hash(),
        "baseline": baseline,
        "candidates": rows,
        SOURCE_ONLY: source_only,
    }
