from typing import Annotated

import mlflow
from zenml import step

from graft.data.dataset import TargetSplits
from graft.evaluation.evaluate import evaluate_candidates
from graft.models.bundle import ModelBundle
from graft.registry.run_logging import log_confusion_matrix, log_prefixed_metrics
from graft.results import Evaluation
from graft.transfer import CandidateSet


@step(experiment_tracker=True)
def evaluate(
    candidates: CandidateSet, target_splits: TargetSplits, source_model: ModelBundle, baseline: str
) -> Annotated[Evaluation, "evaluation"]:
    """Score every candidate on the held-out test split; log metrics and a confusion matrix each."""
    report = evaluate_candidates(candidates, target_splits, source_model, baseline)
    for candidate in candidates.candidates:
        row = report.candidates[candidate.strategy]
        with mlflow.start_run(run_id=candidate.mlflow_run_id, nested=True):
            log_prefixed_metrics(row.test, "test_")
            log_prefixed_metrics(row.val, "val_")
            if row.negative_transfer_gap is not None:
                mlflow.log_metric("negative_transfer_gap", row.negative_transfer_gap)
            log_confusion_matrix(row.confusion_matrix, report.class_names, f"{candidate.strategy}: test split", "confusion_matrix.png")
    if report.source_only is not None:
        log_prefixed_metrics(report.source_only, "source_only_test_")
    return report
