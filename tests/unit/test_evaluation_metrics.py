"""graft.evaluation: metrics from logits and scoring candidates on the frozen splits."""

from __future__ import annotations

import math

import pytest
import torch


from graft.evaluation.metrics import classification_metrics, confusion_matrix, expected_calibration_error  # noqa: E402


def logits_for(predictions: list[int], num_classes: int, confidence: float = 20.0) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(predictions), num_classes).float() * confidence


def test_confusion_matrix_rows_are_true_classes():
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    predictions = torch.tensor([0, 1, 1, 2, 0, 2])
    matrix = confusion_matrix(predictions, labels, 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert int(matrix.sum()) == 6


def test_perfect_predictions():
    labels = torch.tensor([0, 1, 2, 2])
    metrics = classification_metrics(logits_for([0, 1, 2, 2], 3), labels, 3)
    assert metrics["accuracy"] == 1.0
    assert metrics["macro_f1"] == 1.0
    assert metrics["balanced_accuracy"] == 1.0
    assert metrics["nll"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["ece"] == pytest.approx(0.0, abs=1e-6)
    assert [metrics[f"recall_{i}"] for i in range(3)] == [1.0, 1.0, 1.0]


def test_metrics_by_hand():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    predictions = [0, 0, 0, 1, 1, 0, 2, 1]
    metrics = classification_metrics(logits_for(predictions, 3), labels, 3)
    assert metrics["accuracy"] == pytest.approx(5 / 8)
    recalls = [3 / 4, 1 / 2, 1 / 2]
    precisions = [3 / 4, 1 / 3, 1.0]
    f1 = [2 * p * r / (p + r) for p, r in zip(precisions, recalls)]
    assert metrics["balanced_accuracy"] == pytest.approx(sum(recalls) / 3)
    assert metrics["macro_f1"] == pytest.approx(sum(f1) / 3)
    for index, recall in enumerate(recalls):
        assert metrics[f"recall_{index}"] == pytest.approx(recall)


def test_metrics_match_scikit_learn():
    import sklearn.metrics as sklearn_metrics
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (200,), generator=generator)
    logits = torch.randn(200, 5, generator=generator) + 2.0 * torch.nn.functional.one_hot(labels, 5)
    metrics = classification_metrics(logits, labels, 5)
    predictions = logits.argmax(1).numpy()
    y = labels.numpy()
    assert metrics["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(y, predictions))
    assert metrics["macro_f1"] == pytest.approx(sklearn_metrics.f1_score(y, predictions, average="macro"))
    assert metrics["balanced_accuracy"] == pytest.approx(sklearn_metrics.balanced_accuracy_score(y, predictions))
    assert metrics["nll"] == pytest.approx(sklearn_metrics.log_loss(y, logits.softmax(1).numpy(), labels=range(5)), rel=1e-4)


def test_absent_classes_are_left_out_of_macro_averages():
    labels = torch.tensor([0, 0, 1, 1])  # class 2 never occurs
    metrics = classification_metrics(logits_for([0, 0, 1, 1], 3), labels, 3)
    assert metrics["macro_f1"] == 1.0
    assert metrics["balanced_accuracy"] == 1.0
    assert metrics["recall_2"] == 0.0


def test_uniform_logits():
    labels = torch.tensor([0, 1, 2, 3])
    metrics = classification_metrics(torch.zeros(4, 4), labels, 4)
    assert metrics["nll"] == pytest.approx(math.log(4))
    assert metrics["ece"] == pytest.approx(0.0, abs=1e-6)  # 25% confident, 25% right


def test_metrics_accept_other_dtypes_and_devices():
    labels = torch.tensor([0, 1], dtype=torch.int32)
    metrics = classification_metrics(logits_for([0, 1], 2).half(), labels, 2)
    assert metrics["accuracy"] == 1.0


def test_empty_split_is_an_error():
    with pytest.raises(ValueError):
        classification_metrics(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64), 3)


def test_expected_calibration_error():
    # confident and always wrong: ECE is the confidence
    probabilities = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9]])
    labels = torch.tensor([1, 1, 0])
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.9)
    # 80% confident and right 80% of the time: calibrated
    probabilities = torch.tensor([[0.8, 0.2]] * 5)
    labels = torch.tensor([0, 0, 0, 0, 1])
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.0, abs=1e-6)
    # two bins, weighted by their share of the samples
    probabilities = torch.tensor([[0.95, 0.05], [0.95, 0.05], [0.6, 0.4], [0.6, 0.4]])
    labels = torch.tensor([0, 0, 1, 1])
    expected = 0.5 * abs(0.95 - 1.0) + 0.5 * abs(0.6 - 0.0)
    assert expected_calibration_error(probabilities, labels) == pytest.approx(expected)


# --- scoring candidates ------------------------------------------------------------------------


def test_evaluate_candidates(source_bundle, blob_dataset):
    import graft.evaluation.evaluate as evaluate
    from graft.data.splits import split_target
    from graft.models.bundle import ModelBundle
    from graft.transfer import Candidate, CandidateSet

    splits = split_target(blob_dataset, 0.2, 0.3, labels_per_class=5, split_seed=0, budget_seed=0)

    def candidate(name: str, seed: int) -> Candidate:
        torch.manual_seed(seed)
        model = source_bundle.build_model()
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(0.3 * torch.randn_like(parameter))
        bundle = ModelBundle.from_model(model, source_bundle.spec, source_bundle.class_names, source_bundle.preprocessing)
        return Candidate(name, bundle, {}, [], 0.0, 0.0, 1, 0.0)

    candidates = CandidateSet([candidate("scratch", 1), candidate("feature", 2)])
    report = evaluate.evaluate_candidates(candidates, splits, source_bundle, baseline="scratch")
    assert report.baseline == "scratch"
    assert report.class_names == ["a", "b", "c"]
    assert report.test_images == splits.size("test")
    assert report.val_images == splits.size("val")
    assert report.eval_set_hash == splits.eval_set_hash()
    rows = report.candidates
    assert set(rows) == {"scratch", "feature"}
    assert rows["scratch"].negative_transfer_gap == 0.0
    gap = rows["scratch"].test["accuracy"] - rows["feature"].test["accuracy"]
    assert rows["feature"].negative_transfer_gap == pytest.approx(gap)
    matrix = torch.tensor(rows["feature"].confusion_matrix)
    assert int(matrix.sum()) == splits.size("test")
    assert float(matrix.diag().sum()) / splits.size("test") == pytest.approx(rows["feature"].test["accuracy"])
    assert report.source_only is not None
    assert 0.0 <= report.source_only["accuracy"] <= 1.0

    renamed = split_target(
        type(blob_dataset)(blob_dataset.images, blob_dataset.labels, ["x", "y", "z"], "renamed"), 0.2, 0.3, 5, 0, 0
    )
    other = evaluate.evaluate_candidates(candidates, renamed, source_bundle, baseline="adaptive")
    assert other.source_only is None
    assert all(row.negative_transfer_gap is None for row in other.candidates.values())


def test_temperature_scaling_fixes_overconfident_logits():
    import torch.nn.functional as F

    from graft.evaluation.calibration import fit_temperature

    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (600,), generator=generator)
    clean = torch.randn(600, 5, generator=generator)
    clean[torch.arange(600), labels] += 1.5  # right about 70% of the time
    overconfident = clean * 6
    temperature = fit_temperature(overconfident, labels)
    assert 3.0 < temperature < 12.0
    assert F.cross_entropy(overconfident / temperature, labels) < F.cross_entropy(overconfident, labels)


def test_temperature_of_empty_logits_is_one():
    from graft.evaluation.calibration import fit_temperature

    assert fit_temperature(torch.zeros((0, 3)), torch.zeros(0, dtype=torch.int64)) == 1.0
